"""faceattr as a service: a REST API, a web page with a live webcam, micro-batched inference.

``faceattr serve`` (:func:`faceattr.serve.app.serve`) runs :func:`faceattr.serve.app.create_app` under
uvicorn; the optional dependencies come with ``pip install "faceattr[serve]"``.
"""
