"""Full-size datasets for the heavy tier, read from image folders or a CSV manifest.

Two generic layouts cover the built-in datasets and users' own data:

* ``folders``: split folders holding one folder per class (``<root>/train/<class>/*.png``, ``<root>/test/...``,
  optionally ``<root>/val/...``), or class folders directly under the root when there are no splits.
* ``csv``: a manifest with a path column, a label column and optionally a split column (and a group column,
  so that images of one patient or lesion never straddle splits).

The modules, in the order a load goes through them:

* :mod:`.spec`: :class:`FolderDatasetSpec`, what a dataset is and how it is laid out;
* :mod:`.catalogue`: the built-in datasets; :mod:`.registration`: every dataset by name, the user's own
  registered in code or by ``--folder-dataset``;
* :mod:`.location`: the folder that holds a dataset's files, or where to get them;
* :mod:`.scanning`: its images, labels and splits as a :class:`FolderScan`, after :mod:`.splitting` carved
  the splits that are not on disk;
* :mod:`.decoding`: decoding the images once into a cache keyed by the dataset's fingerprint;
* :mod:`.loading`: the :class:`DataBundle`, and the size a dataset runs at when none is given.
"""

from medft_bench.data.folders.decoding import cache_root, fingerprint
from medft_bench.data.folders.loading import default_size, default_size_note, load_folder_dataset
from medft_bench.data.folders.location import ROOT_ENV, candidate_roots, locate
from medft_bench.data.folders.registration import get_spec, register_folder_dataset, register_from_option, registry
from medft_bench.data.folders.scanning import FolderScan, scan
from medft_bench.data.folders.spec import FolderDatasetSpec

__all__ = [
    "ROOT_ENV",
    "FolderDatasetSpec",
    "FolderScan",
    "cache_root",
    "candidate_roots",
    "default_size",
    "default_size_note",
    "fingerprint",
    "get_spec",
    "load_folder_dataset",
    "locate",
    "register_folder_dataset",
    "register_from_option",
    "registry",
    "scan",
]
