"""Descriptors of a folder of images written for other tools.

    python -m vgjax.export hloc --checkpoint RUN --images DIR --out OUT [--num-matched K] ...
    python -m vgjax.export npy --checkpoint RUN --images DIR --out F.npy ...

`hloc`: hloc's global feature file and retrieval pairs, for hloc / COLMAP (vgjax.export.hloc);
`npy`: a float32 (N, D) `.npy` and its paths file, the command `python -m vgjax.describe`.
`python -m vgjax.export FORMAT --help` lists each format's options.
"""
