"""Tiny copies of each dataset kind's published layout (folder and file names, list-file lines,
header rows), generated on demand. Every fixture holds good images across groups plus one corrupt
image, one unknown label and one excluded class; `Layout` says what loading it must give."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Layout:
    kind: str
    build: Callable[[Path], Path]  # writes the fixture under a folder, returns the location
    emotions: Counter  # canonical emotion -> images loaded
    races: Counter = field(default_factory=Counter)  # canonical race -> images (None: not given)
    genders: Counter = field(default_factory=Counter)
    excluded: dict[str, str] = field(default_factory=dict)  # image_id -> excluded field
    quarantined: dict[str, str] = field(default_factory=dict)  # image_id -> a phrase of the reason
    options: dict[str, Any] = field(default_factory=dict)  # datasets.<name>.options of the test
    identities: int = 0  # distinct identities among the loaded images


def image(path: Path, shade: int = 0, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", size, (shade % 256, 120, 200)).save(path, fmt)


def corrupt(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 truncated: not an image")


def clip(path: Path, shade: int = 0) -> None:
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 12))
    for i in range(3):
        writer.write(np.full((12, 16, 3), (shade + 30 * i) % 256, np.uint8))
    writer.release()


def _files(root: Path, good: list[str], bad: str, writer=image) -> Path:
    for i, rel in enumerate(good):
        writer(root / rel, 20 * i)
    corrupt(root / bad)
    return root


# ------------------------------------------------------------------ generic kinds

def build_folders(root: Path) -> Path:
    return _files(root / "faces", ["train/happy/a.png", "train/sad/b.png", "test/Anger/c.png",
                                   "train/contempt/e.png", "test/bored/d.png"], "test/neutral/broken.png")


def build_filename_pattern(root: Path) -> Path:
    return _files(root / "set", ["faces/black_female_01_hap.jpg", "faces/white_male_02_sad.jpg",
                                 "faces/asian_female_03_ang.jpg", "faces/white_female_06_fea.jpg",
                                 "faces/white_male_04_bored.jpg", "faces/README-cover.jpg"],
                  "faces/black_male_05_sad.jpg")


# ------------------------------------------------------------------ named kinds

CFD_GOOD = ["Images/CFD/AF-200/CFD-AF-200-228-N.jpg", "Images/CFD/BM-201/CFD-BM-201-001-HC.jpg",
            "Images/CFD/BM-201/CFD-BM-201-002-HO.jpg", "Images/CFD-MR/MF-300/CFD-MF-300-001-N.jpg",
            "Images/CFD-INDIA/IM-600/CFD-IM-600-001-A.jpg"]
NORMING_WORKBOOK = "CFD 3.0 Norming Data and Codebook.xlsx"


def build_chicago_face(root: Path) -> Path:
    import openpyxl

    base = _files(root / "CFD Version 3.0", CFD_GOOD + [
        "Images/CFD/WM-204/CFD-WM-204-001-F.jpg",  # fear: excluded by the test's options
        "Images/CFD/LF-203/CFD-LF-203-001-X.jpg",  # unknown expression code
        "Images/CFD/ZF-205/CFD-ZF-205-001-N.jpg",  # race code Z has no seed row
    ], "Images/CFD/WF-202/CFD-WF-202-001-N.jpg")
    book = openpyxl.Workbook()
    book.active.title = "Read Me"
    book.active.append(["Chicago Face Database 3.0 codebook (fixture)"])
    sheet = book.create_sheet("CFD U.S. Norming Data")
    sheet.append(["CFD 3.0 U.S. norming data"])
    sheet.append([])
    sheet.append(["Target", "Race", "Gender", "Age", "Afraid", "Happy"])
    sheet.append(["AF-200", "A", "F", 28.5, 1.4, 2.1])
    sheet.append(["BM-201", "B", "M", 31.0, 1.2, 4.6])
    book.save(base / NORMING_WORKBOOK)
    return base


def build_radiate(root: Path) -> Path:
    return _files(root / "RADIATE", ["Black/BF01_HA_O.jpg", "White/WM02_NE_C.jpg", "Hispanic/HF03_SA_O.jpg",
                                     "Asian/AM04_AN_C.jpg", "Black/BF01_CA_C.jpg", "Other/OM05_HA_O.jpg",
                                     "White/WM02_XX_O.jpg"], "Asian/AF06_FE_O.jpg")


def build_tarr(root: Path) -> Path:
    return _files(root / "face-place", ["Caucasian/female/p01_happy.jpg", "Black/male/p02_sad.jpg",
                                        "Asian/female/p03_angry.jpg", "Hispanic/male/p04_neutral.jpg",
                                        "Caucasian/female/p01_confusion.jpg", "Multiracial/male/p05_happy.jpg",
                                        "Asian/female/p03_bored.jpg"], "Black/male/p02_fear.jpg")


def build_caer_s(root: Path) -> Path:
    return _files(root / "CAER-S", ["train/Happy/0001.png", "train/Sad/0002.png", "test/Anger/0003.png",
                                    "test/Neutral/0004.png", "train/Disgust/0007.png",
                                    "train/Contempt/0006.png"], "test/Fear/0005.png")


def build_caer(root: Path) -> Path:
    return _files(root / "CAER", ["train/Happy/0001.avi", "validation/Sad/0002.avi", "test/Anger/0003.avi",
                                  "train/Disgust/0007.avi", "train/Contempt/0006.avi"], "test/Fear/0005.avi",
                  writer=clip)


def build_kdef(root: Path) -> Path:
    return _files(root / "KDEF_and_AKDEF", ["KDEF/AF01/AF01AFS.JPG", "KDEF/AF01/AF01HAS.JPG",
                                            "KDEF/BF01/BF01SAHL.JPG", "KDEF/AM02/AM02NES.JPG",
                                            "KDEF/AM02/AM02ANFL.JPG", "KDEF/AM02/AM02XXS.JPG"],
                  "KDEF/AM02/AM02SUS.JPG")


RAF_ROWS = [  # image, emotion code, (gender, race, age bin) or None for no annotation file
    ("train_00001.jpg", "4", ("1", "0", "2")), ("train_00002.jpg", "5", ("0", "1", "3")),
    ("test_0001.jpg", "7", ("2", "2", "1")), ("train_00003.jpg", "9", ("0", "0", "2")),
    ("train_00004.jpg", "1", ("1", "1", "2")), ("train_00005.jpg", "2", ("0", "2", "2")),
    ("train_00006.jpg", "6", None),
]


def build_raf_db(root: Path, list_name: str = "list_patition_label.txt") -> Path:
    basic = root / "RAF-DB" / "basic"
    lines = []
    for name, code, attributes in RAF_ROWS:
        stem = name.removesuffix(".jpg")
        target = basic / "Image" / "aligned" / f"{stem}_aligned.jpg"
        (corrupt if name == "train_00004.jpg" else image)(target)
        lines.append(f"{name} {code}")
        if attributes:
            note = basic / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text("".join(f"{30 + i}.5 {40 + i}.25\n" for i in range(5)) + "\n".join(attributes) + "\n")
    (basic / "EmoLabel").mkdir(parents=True)
    (basic / "EmoLabel" / list_name).write_text("\n".join(lines) + "\n")
    return root / "RAF-DB"


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal")


def build_affectnet(root: Path) -> Path:
    base = root / "AffectNet"
    rows = {"training.csv": [("1/a.jpg", 1, 0.5, 0.2), ("1/b.jpg", 2, -0.6, -0.1), ("2/d.jpg", 8, -2, -2),
                             ("2/e.jpg", 11, 0.0, 0.0)],
            "validation.csv": [("2/c.jpg", 7, -0.3, 0.4), ("3/f.jpg", 0, 0.0, 0.0), ("3/g.jpg", 6, 1.5, 0.3)]}
    (base / "Manually_Annotated_file_lists").mkdir(parents=True)
    for file, entries in rows.items():
        lines = [AFFECTNET_HEADER] + [f'{p},10,10,80,80,"1.0;2.0",{e},{v},{a}' for p, e, v, a in entries]
        (base / "Manually_Annotated_file_lists" / file).write_text("\n".join(lines) + "\n")
        for i, (path, *_rest) in enumerate(entries):
            (corrupt if path == "3/f.jpg" else image)(base / "Manually_Annotated_Images" / path, 30 * i)
    (base / "Demographics").mkdir()
    (base / "Demographics" / "fairface_labels.csv").write_text(
        "subDirectory_filePath,race,gender,age\n1/a.jpg,White,Female,25\n1/b.jpg,Black,Male,40\n"
        "2/c.jpg,Indian,Female,\n")
    return base


LAYOUTS = [
    Layout("folders", build_folders, Counter(happy=1, sad=1, anger=1),
           excluded={"train/contempt/e.png": "emotion"},
           quarantined={"test/bored/d.png": "not in label_set 'canonical'",
                        "test/neutral/broken.png": "not a readable image"},
           options={"exclude": {"emotion": ["contempt"]}}),
    Layout("filename_pattern", build_filename_pattern, Counter(happy=1, sad=1, anger=1),
           Counter(black=1, white=1, asian=1), Counter(female=2, male=1),
           identities=3, excluded={"faces/white_female_06_fea.jpg": "emotion"},
           quarantined={"faces/white_male_04_bored.jpg": "label 'bored'",
                        "faces/black_male_05_sad.jpg": "not a readable image",
                        "faces/README-cover.jpg": "does not match the layout pattern"},
           options={"pattern": r"faces/(?P<race>[a-z]+)_(?P<gender>[a-z]+)_(?P<identity>\d+)_(?P<emotion>[a-z]+)\.jpg",
                    "codes": {"emotion": {"hap": "happy", "ang": "anger", "fea": "fear"}},
                    "exclude": {"emotion": ["fear"]}}),
    Layout("chicago_face", build_chicago_face, Counter(neutral=2, happy=2, anger=1),
           Counter(asian=1, black=2, multiracial=1, south_asian=1), Counter(female=2, male=3),
           identities=4, excluded={"Images/CFD/WM-204/CFD-WM-204-001-F.jpg": "emotion"},
           quarantined={"Images/CFD/LF-203/CFD-LF-203-001-X.jpg": "label 'X'",
                        "Images/CFD/ZF-205/CFD-ZF-205-001-N.jpg": "race code 'Z'",
                        "Images/CFD/WF-202/CFD-WF-202-001-N.jpg": "not a readable image"},
           options={"exclude": {"emotion": ["fear"]}}),
    Layout("radiate", build_radiate, Counter(happy=1, neutral=1, sad=1, anger=1),
           Counter(black=1, white=1, latino=1, asian=1), Counter(female=2, male=2),
           identities=4, excluded={"Black/BF01_CA_C.jpg": "emotion", "Other/OM05_HA_O.jpg": "race"},
           quarantined={"White/WM02_XX_O.jpg": "label 'XX'", "Asian/AF06_FE_O.jpg": "not a readable image"}),
    Layout("tarr", build_tarr, Counter(happy=1, sad=1, anger=1, neutral=1),
           Counter(white=1, black=1, asian=1, latino=1), Counter(female=2, male=2),
           identities=4, excluded={"Caucasian/female/p01_confusion.jpg": "emotion", "Multiracial/male/p05_happy.jpg": "race"},
           quarantined={"Asian/female/p03_bored.jpg": "label 'bored'",
                        "Black/male/p02_fear.jpg": "not a readable image"}),
    Layout("caer_s", build_caer_s, Counter(happy=1, sad=1, anger=1, neutral=1),
           excluded={"train/Disgust/0007.png": "emotion"},
           quarantined={"train/Contempt/0006.png": "label 'Contempt'", "test/Fear/0005.png": "not a readable image"},
           options={"exclude": {"emotion": ["disgust"]}}),
    Layout("caer", build_caer, Counter(happy=1, sad=1, anger=1),
           excluded={"train/Disgust/0007.avi": "emotion"},
           quarantined={"train/Contempt/0006.avi": "label 'Contempt'",
                        "test/Fear/0005.avi": "not a readable video clip"},
           options={"exclude": {"emotion": ["disgust"]}}),
    Layout("kdef", build_kdef, Counter(fear=1, happy=1, sad=1, neutral=1), Counter(),
           Counter(female=3, male=1),
           identities=2, excluded={"KDEF/AM02/AM02ANFL.JPG": "angle"},
           quarantined={"KDEF/AM02/AM02XXS.JPG": "label 'XX'", "KDEF/AM02/AM02SUS.JPG": "not a readable image"},
           options={"exclude": {"angle": ["FL"]}}),
    Layout("raf_db", build_raf_db, Counter(happy=1, sad=1, neutral=1),
           Counter(white=1, black=1, asian=1), Counter(female=1, male=1, unsure=1),
           excluded={"Image/aligned/train_00005_aligned.jpg": "emotion"},
           quarantined={"Image/aligned/train_00003_aligned.jpg": "label '9'",
                        "Image/aligned/train_00004_aligned.jpg": "not a readable image",
                        "Image/aligned/train_00006_aligned.jpg": "_manu_attri.txt does not exist"},
           options={"exclude": {"emotion": ["fear"]}}),
    Layout("affectnet", build_affectnet, Counter(happy=1, sad=1, contempt=1),
           Counter(white=1, black=1, south_asian=1), Counter(female=2, male=1),
           excluded={"Manually_Annotated_Images/2/d.jpg": "emotion"},
           quarantined={"Manually_Annotated_Images/2/e.jpg": "label '11'",
                        "Manually_Annotated_Images/3/f.jpg": "not a readable image",
                        "Manually_Annotated_Images/3/g.jpg": "valence '1.5' is not a number in [-1.0, 1.0]"}),
]
