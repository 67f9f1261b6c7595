#!/usr/bin/env python
"""Export an mvld_hf student as ONE Sentence Transformers model (text in any language + images) and upload it.

    python hub_upload.py CHECKPOINT --repo-id ORG/NAME [--private] [--revision REV] [--local-dir DIR [--push]]
                         [--teacher NAME_OR_PATH] [--eval-results JSON] [--text-only] [--languages de,fr,...]
    python hub_upload.py CHECKPOINT --local-dir DIR          # write the folder only (no --repo-id, no upload)

``--local-dir`` alone writes the folder (weights, tokenizer, image processor, model card) without uploading.
The result loads with plain ``SentenceTransformer("ORG/NAME")``: no ``trust_remote_code``, no ``import mvld_hf``.
All logic lives in :mod:`mvld_hf.hub` (``build_hub_folder``, ``push_to_hub``, ``main``); after ``pip install``
the same command is ``mvld-upload``.
"""

import sys

from mvld_hf.hub import main

if __name__ == "__main__":
    sys.exit(main())
