"""Installs faceattr: multi-task facial attribute recognition."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

here = Path(__file__).parent
# faceattr serve: the REST API, its page and metrics (websockets: uvicorn's WebSocket protocol; httpx: its load
# test, faceattr.serve.loadtest and tools/benchmark_serve.py).
serve = ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "prometheus-client>=0.17", "websockets>=12",
         "httpx>=0.25"]
# Bulk prediction (Ray Data) and the service under Ray Serve, which serves the same FastAPI app and so needs the
# serve extra too. 2.47: the first release with serve.ingress taking a function that builds the app on each replica.
ray = ["ray[serve,data]>=2.47"] + serve
# tools/export_model.py --format onnx (torch's dynamo exporter needs onnxscript) and backend="onnx" (onnxruntime).
onnx = ["onnx>=1.17", "onnxscript>=0.5", "onnxruntime>=1.20"]
# faceattr label (the pairwise-vote labelling tool: its database and web page) and faceattr clean (perceptual
# hashes for near duplicates). The Bradley-Terry fit is faceattr's own, vectorised (choix loops over the votes in
# Python, 50 times slower at 100,000 votes); the tests check it against choix's, hence choix in dev.
label = ["sqlalchemy>=2.0", "imagehash>=4.3"] + serve
# A team's labelling database on PostgreSQL (SQLAlchemy URL postgresql+psycopg://...).
postgres = ["psycopg[binary]>=3.1"]
# faceattr embed --out FILE.parquet (.npy + an index CSV needs nothing more). UMAP maps are used when umap-learn is
# installed, but it is no extra: it pulls numba (about 210 MB) and its first import and fit take minutes here.
embeddings = ["pyarrow>=14"]
version = {}
exec((here / "faceattr" / "version.py").read_text(), version)

setup(
    name="faceattr",
    version=version["__version__"],
    description="Multi-task facial attribute recognition: detection, alignment, 40 CelebA attributes and beauty score",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # Namespace discovery so that data folders (faceattr/weights) are packages whose files ship.
    packages=find_namespace_packages(include=["faceattr", "faceattr.*"], exclude=["*.__pycache__"]),
    package_data={
        "faceattr": ["py.typed"],  # PEP 561: the package's annotations are for type checkers
        # The default model (tools/export_model.py): weights and their description with the checksum.
        "faceattr.weights": ["*.safetensors", "*.json"],
        # The service's web page, served from the package (no CDN).
        "faceattr.serve.page": ["*.html", "*.js", "*.css", "*.svg"],
        # The labelling tool's voting and leaderboard pages.
        "faceattr.label.page": ["*.html", "*.js", "*.css"],
    },
    install_requires=[
        "torch>=2.3",
        "torchvision>=0.18",
        "timm>=1.0",
        "facenet-pytorch==2.5.3",
        "numpy>=2.0",
        # OpenCV 5 no longer ships the Haar cascades that FaceDetector("haar") loads.
        "opencv-python-headless>=4.8,<5",
        "scikit-learn>=1.3",
        # The sparsity analysis pins its ridge fits to one BLAS thread (it comes with scikit-learn; named as used).
        "threadpoolctl>=3.1",
        "tensorboard>=2.14",
        "tqdm>=4.66",
        "PyYAML>=6.0",
        "safetensors>=0.4",
        "matplotlib>=3.7",
        "Pillow>=10.0",
    ],
    extras_require={
        # The tests' extra: every optional feature is tested, so it installs them all. playwright drives
        # Debian's chromium in the page's browser tests (never its own browser download).
        "dev": ["pytest>=8.0", "pytest-timeout>=2.2", "build>=1.0", "playwright>=1.45", "choix>=0.3.5"]
               + serve + ray + onnx + label + postgres + embeddings,
        "serve": serve,
        "demo": ["opencv-python>=4.8,<5"],
        "ray": ray,
        "onnx": onnx,
        "label": label,
        "postgres": postgres,
        "embeddings": embeddings,
    },
    entry_points={"console_scripts": ["faceattr=faceattr.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
