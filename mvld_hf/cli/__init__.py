"""Command-line entry points (installed as console scripts by ``pip install``).

- ``mvld-distill`` (:mod:`mvld_hf.cli.distill`): what ``accelerate launch examples/distill.py`` runs;
- ``mvld-evaluate`` (:mod:`mvld_hf.cli.evaluate`): what ``python examples/evaluate.py`` runs;
- ``mvld-upload`` (:mod:`mvld_hf.cli.upload`): what ``python hub_upload.py`` runs;
- ``mvld-study`` (:mod:`mvld_hf.cli.study`): what ``python examples/study.py`` runs (a grid of ``mvld-distill`` runs).

The example scripts in the repository are thin wrappers around these modules, so both routes run the same code.
"""
