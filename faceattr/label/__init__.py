"""Pairwise-vote labelling: raters pick the preferred of two faces, votes become scores.

The side of the package that turns a team's own judgements into training labels:

- :mod:`~faceattr.label.ratings`: Elo (live, as the votes arrive) and a Bradley-Terry fit over
  all votes (penalised maximum likelihood as choix's, vectorised) with its uncertainty and
  split-half reliability; per-rater statistics; the 1-5 scale of the export.
- :mod:`~faceattr.label.schedule`: which pair to show next (the seeds' random-then-close scheme,
  a cap of votes per image, and model-seeded scheduling).
- :mod:`~faceattr.label.simulate`: simulated raters against a known truth, to size the effort
  (``faceattr label simulate``), and :mod:`~faceattr.label.benchmark`, the simulation benchmark
  behind ``tools/benchmark_labelling.py``.
- :mod:`~faceattr.label.store`: the database (SQLite by default, any SQLAlchemy URL): projects,
  images, raters, issued pairs and raw votes, the truth from which ratings are derived.
- :mod:`~faceattr.label.project`: a project's images (faces detected and aligned) and its export,
  a CSV that ``tools/train.py`` reads as a ``csv`` source with beauty labels.
- :mod:`~faceattr.label.app`: the voting web page and its API (``faceattr label serve``), and
  :mod:`~faceattr.label.loadtest`, simulated raters voting over HTTP.
- :mod:`~faceattr.label.commands`: the ``faceattr label`` subcommands.
"""
