"""The built-in folder datasets of the heavy tier: what each is, its layout, where to get it and how to install it.

An entry names only what differs from :func:`_cfg`'s defaults (a multi-class RGB dataset of image folders whose
images are larger than the backbones' input, so it runs at their 224 px unless a size is given); ``labels`` maps
each class (folder name or manifest label, in label order) to its readable name.
"""

from __future__ import annotations

from typing import Any

from medft_bench.data.folders.spec import BACKBONE_SIZE, FolderDatasetSpec


def _cfg(name: str, *, labels: dict[str, str], **kwargs: Any) -> FolderDatasetSpec:
    """A catalogue entry: the defaults shared by the built-in datasets, overridden by ``kwargs``."""
    return FolderDatasetSpec(**{
        "name": name,
        "classes": tuple(labels),
        "label_names": labels,
        "task": "multi-class",
        "channels": 3,
        "layout": "folders",
        "default_size": BACKBONE_SIZE,
        **kwargs,
    })


BUILTIN: dict[str, FolderDatasetSpec] = {s.name: s for s in (
    _cfg(
        "chest_xray_pneumonia",
        title="Chest X-Ray Images (Pneumonia), paediatric chest radiographs",
        modality="x-ray",
        labels={"NORMAL": "normal", "PNEUMONIA": "pneumonia"},
        task="binary-class",
        channels=1,
        split_dirs={"train": ("train",), "val": ("val",), "test": ("test",)},
        merge_val_into_train=True,
        crop="center",
        url="https://data.mendeley.com/datasets/rscbjbr9sj/2 (ChestXRay2017.zip; Kaggle mirror: "
            "paultimothymooney/chest-xray-pneumonia)",
        citation="Kermany et al., Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep "
                 "Learning, Cell 172(5):1122-1131, 2018",
        licence="CC BY 4.0",
        instructions="unzip ChestXRay2017.zip and move the contents of chest_xray/ (train/, test/ and, in "
                     "the Kaggle copy, val/) into the dataset folder. The Kaggle val/ folder holds only 16 "
                     "images: it is merged into train and a stratified 10% val split is carved instead.",
    ),
    _cfg(
        "brain_tumor_mri",
        title="Brain Tumor MRI (4 classes: glioma, meningioma, pituitary, no tumour)",
        modality="mri",
        labels={"glioma": "glioma", "meningioma": "meningioma", "notumor": "no tumour",
                "pituitary": "pituitary tumour"},
        channels=1,
        split_dirs={"train": ("Training",), "test": ("Testing",)},
        crop="center",
        url="https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
        citation="M. Nickparvar, Brain Tumor MRI Dataset, Kaggle 2021 (combining figshare: Cheng et al., "
                 "PLoS ONE 10(10):e0140253, 2015 / 2017 release, SARTAJ and Br35H)",
        licence="CC0 1.0 as listed on Kaggle; the figshare source is CC BY 4.0: check each source's terms",
        instructions="unzip the Kaggle archive so that Training/ and Testing/ (each with glioma/, meningioma/, "
                     "notumor/, pituitary/) sit in the dataset folder. There is no val split: 10% of "
                     "Training is carved, stratified by class.",
    ),
    _cfg(
        "nct_crc_he",
        title="NCT-CRC-HE-100K (train) and CRC-VAL-HE-7K (test), colorectal histology patches",
        modality="histology",
        labels={"ADI": "adipose", "BACK": "background", "DEB": "debris", "LYM": "lymphocytes", "MUC": "mucus",
                "MUS": "smooth muscle", "NORM": "normal colon mucosa", "STR": "cancer-associated stroma",
                "TUM": "colorectal adenocarcinoma epithelium"},
        split_dirs={"train": ("NCT-CRC-HE-100K", "NCT-CRC-HE-100K-NONORM"), "test": ("CRC-VAL-HE-7K",)},
        url="https://zenodo.org/records/1214456 (NCT-CRC-HE-100K.zip, CRC-VAL-HE-7K.zip)",
        citation="Kather et al., Predicting survival from colorectal cancer histology slides using deep "
                 "learning: a retrospective multicenter study, PLOS Medicine 16(1):e1002730, 2019",
        licence="CC BY 4.0",
        instructions="unzip both archives into the dataset folder (giving NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/, "
                     "each with the nine class folders of 224 px .tif patches). As in PathMNIST, 10% of the "
                     "training set is carved as val. Decoding 100,000 patches takes a while once; at 224 px "
                     "the cache holds about 15 GB.",
    ),
    _cfg(
        "ham10000",
        title="HAM10000 dermoscopic images of pigmented skin lesions",
        modality="dermoscopy",
        labels={"akiec": "actinic keratoses and intraepithelial carcinoma",
                "bcc": "basal cell carcinoma", "bkl": "benign keratosis-like lesions", "df": "dermatofibroma",
                "mel": "melanoma", "nv": "melanocytic nevi", "vasc": "vascular lesions"},
        layout="csv",
        manifest="HAM10000_metadata.csv",
        path_column="image_id",
        label_column="dx",
        split_column=None,
        group_column="lesion_id",
        find_by_stem=True,
        val_fraction=0.125,  # 7:1:2 overall, as DermaMNIST
        url="https://doi.org/10.7910/DVN/DBW86T (Harvard Dataverse: HAM10000_images_part_1.zip, "
            "HAM10000_images_part_2.zip, HAM10000_metadata.csv)",
        citation="Tschandl, Rosendahl and Kittler, The HAM10000 dataset, a large collection of multi-source "
                 "dermatoscopic images of common pigmented skin lesions, Scientific Data 5:180161, 2018",
        licence="CC BY-NC 4.0 (non-commercial)",
        instructions="put HAM10000_metadata.csv in the dataset folder and unzip both image archives into it "
                     "(any sub-folders: images are found by image_id). Splits 7:1:2 are carved stratified by "
                     "diagnosis and grouped by lesion_id, so that images of one lesion stay in one split.",
    ),
    _cfg(
        "kvasir_v2",
        title="Kvasir v2, gastrointestinal endoscopy",
        modality="endoscopy",
        labels={"dyed-lifted-polyps": "dyed lifted polyps", "dyed-resection-margins": "dyed resection margins",
                "esophagitis": "esophagitis", "normal-cecum": "normal cecum", "normal-pylorus": "normal pylorus",
                "normal-z-line": "normal Z-line", "polyps": "polyps", "ulcerative-colitis": "ulcerative colitis"},
        url="https://datasets.simula.no/kvasir/ (kvasir-dataset-v2.zip)",
        citation="Pogorelov et al., KVASIR: A Multi-Class Image Dataset for Computer Aided Gastrointestinal "
                 "Disease Detection, ACM MMSys 2017, pp. 164-169",
        licence="free for research and education with citation; no commercial use without permission",
        instructions="unzip kvasir-dataset-v2.zip and move the eight class folders into the dataset folder "
                     "(or leave them inside kvasir-dataset-v2/). There are no official splits: 20% test, "
                     "then 10% of the rest as val, are carved stratified by class.",
    ),
)}
