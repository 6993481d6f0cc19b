"""Transcribe the seed papers' printed tables into the dbt seed published_values.csv.

Parsed from the seed texts (../shared/seeds, or the folder given as the first argument) so no
number is retyped by hand; every row keeps the cell as printed and its line in the text.
Usage: python scripts/transcribe_published_values.py [SEEDS_DIR]
"""
import csv
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "seeds"
CH, TAE = "000_b46883f238181e0b.txt", "001_868c807cca019beb.txt"
ch = (SEEDS / CH).read_text().splitlines()
tae = (SEEDS / TAE).read_text().splitlines()
EMO = {"Anger": "anger", "Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happy",
       "Neutral": "neutral", "Sad": "sad", "Surprise": "surprise", "Accuracy": "all"}
RACE = {"Asian": "asian", "Black": "black", "Hispanic": "latino", "White": "white"}
rows = []

def unit(text):
    t = text.strip().lstrip("<").strip().replace("−", "-")
    dec = len(t.split(".")[1]) if "." in t else 0
    return 10 ** -dec

def num(text):
    return float(text.replace("−", "-").replace("+", ""))

def add(paper, table, papers_model, model, dataset, measure, text, line, *, scale=1.0, method="", prompting="",
        dimension="", subset_kind="all", subset="all", note="", file=None):
    text = re.sub(r"</?b>", "", text).strip()
    relation = "<" if text.startswith("<") else "="
    value = num(text.lstrip("<").strip()) * scale
    cite = {"chhua": "Chhua et al. (2024)", "tae": "Tae, Park & Choi (2026)"}[paper]
    section = {"chhua": "Section 5", "tae": "Section 4"}[paper]
    rid = ":".join(x for x in [paper, table.replace(" ", "").lower(), model, dataset, method, prompting, dimension,
                                subset, measure] if x)
    rows.append(dict(published_id=rid, paper=paper, paper_table=table, papers_model=papers_model, model=model,
                     dataset=dataset, method=method, prompting=prompting, dimension=dimension,
                     subset_kind=subset_kind, subset=subset, measure=measure, published_value=round(value, 10),
                     published_text=text, relation=relation, rounding_unit=round(unit(text) * scale, 10),
                     source=f"{cite}, {table} ({section})", source_file=f"seeds/{file or (CH if paper == 'chhua' else TAE)}",
                     source_line=line, note=note))

# ---------------- Chhua Table 1 (percent -> proportion)
hdr = [("RADIATE", "single"), ("RADIATE", "maj@5"), ("Tarr", "single"), ("Tarr", "maj@5"),
       ("Chicago Face", "single"), ("Chicago Face", "maj@5")]
for i in range(97, 104):
    parts = ch[i].split("\t")
    if len(parts) < 7 or parts[0].startswith("Model"):
        continue
    label = parts[0]
    model, prompting = (("GPT-4o", "cot") if label == "GPT-4o with CoT" else (label, "plain"))
    for (dataset, method), text in zip(hdr, parts[1:7]):
        if text.strip() == "N/A":
            continue
        add("chhua", "Table 1", "chhua_table1", model, dataset, "accuracy", text, i + 1, scale=0.01,
            method=method, prompting=prompting, note="temperature 1; bold in the paper = best per column"
            if "<b>" in text else "temperature 1")
# ---------------- Chhua Table 2
models2 = ["GPT-4o"] * 4 + ["Gemini 1.5 Pro"] * 4 + ["CLIP"] * 4
races2 = ["Asian", "Black", "Hispanic", "White"] * 3
for i in range(110, 119):
    parts = ch[i].split("\t")
    if parts[0] not in EMO:
        continue
    for model, race, text in zip(models2, races2, parts[1:13]):
        add("chhua", "Table 2", "chhua_table2", model, "", "accuracy", text, i + 1, scale=0.01,
            subset_kind="race_emotion", subset=f"{RACE[race]}|{EMO[parts[0]]}",
            note="dataset(s) not stated in the paper; 'CLIP' = the linear classifier on CLIP embeddings; "
                 "'Hispanic' = canonical race latino")
# ---------------- Chhua z-tests (text, line 121)
line = ch[119]
for a, b, p, z in [("Asian", "Black", "0.024", "2.25"), ("Asian", "Hispanic", "0.011", "2.55"),
                   ("Black", "White", "0.010", "-2.57"), ("Hispanic", "White", "0.007", "-2.70")]:
    assert p in line and z in line, (p, z)
    pair = f"{RACE[a]} vs {RACE[b]}"
    note = ("model and dataset not stated in the paper; z > 0: the second group is misclassified more "
            "(the paper's convention)")
    add("chhua", "z-tests (text)", "chhua_race_ztests", "", "", "z", z, 120, subset_kind="race", subset=pair, note=note)
    add("chhua", "z-tests (text)", "chhua_race_ztests", "", "", "p_value", p, 120, subset_kind="race", subset=pair,
        note=note)

# ---------------- Tae Table 1
for i in range(60, 67):
    cells = [c.strip() for c in tae[i].strip("|").split("|")]
    model = cells[0]
    for measure, text in zip(["accuracy", "macro_f1", "cohen_kappa"], cells[3:6]):
        add("tae", "Table 1", "tae_table1", model, "GIST-AIFaceDB", measure, text, i + 1,
            note=f"{cells[1]}, {cells[2]} parameters; N = 1,440")
# ---------------- Tae Table 2
T2_MODELS = {"Gemma3": "Gemma3-4B", "LLaMA": "LLaMA-3.2-11B"}
head = [c.strip() for c in tae[69].strip("|").split("|")][1:]
for i in range(71, 77):
    cells = [c.strip() for c in tae[i].strip("|").split("|")]
    for model, text in zip(head, cells[1:]):
        add("tae", "Table 2", "tae_table2", T2_MODELS.get(model, model), "GIST-AIFaceDB", "accuracy", text, i + 1,
            subset_kind="emotion", subset=EMO[cells[0]], note="proportion correct; 240 images per emotion")
# ---------------- Tae Tables 3 and 5
for table, start, dimension in [("Table 3", 83, "valence"), ("Table 5", 104, "arousal")]:
    for i in range(start, start + 5):
        cells = [c.strip() for c in tae[i].strip("|").split("|")]
        model = cells[0]
        m, s = re.match(r"([\d.]+) \(([\d.]+)\)", cells[4]).groups()
        hm, hs = re.match(r"([\d.]+) \(([\d.]+)\)", cells[5]).groups()
        for measure, text in [("pearson_r", cells[2]), ("mae", cells[3]), ("model_mean", m), ("model_sd", s),
                              ("human_mean", hm), ("human_sd", hs)]:
            add("tae", table, f"tae_{table.replace(' ', '').lower()}", model, "GIST-AIFaceDB", measure, text, i + 1,
                dimension=dimension, note="model vs the mean human rating of each image; SD over images")
# ---------------- Tae Table 4
head = [c.strip() for c in tae[90].strip("|").split("|")][1:]
for i in range(92, 98):
    cells = [c.strip() for c in tae[i].strip("|").split("|")]
    for model, text in zip(head, cells[1:]):
        add("tae", "Table 4", "tae_table4", T2_MODELS.get(model, model), "GIST-AIFaceDB", "bland_altman_bias", text,
            i + 1, dimension="valence", subset_kind="emotion", subset=EMO[cells[0]],
            note="mean(model - human mean) over the emotion's images")
# ---------------- Tae Table 6
for i in range(113, 119):
    cells = [c.strip() for c in tae[i].strip("|").split("|")]
    for model, bias, p in [("Gemma3-4B", cells[1], cells[2]), ("LLaMA-3.2-11B", cells[3], cells[4])]:
        kw = dict(dimension="arousal", subset_kind="emotion", subset=EMO[cells[0]])
        add("tae", "Table 6", "tae_table6", model, "GIST-AIFaceDB", "bland_altman_bias", bias, i + 1,
            note="mean(VLM - human mean) over the emotion's images", **kw)
        add("tae", "Table 6", "tae_table6", model, "GIST-AIFaceDB", "lmm_p_value", p, i + 1,
            note="p of the VLM-minus-human effect for the emotion, lme4/lmerTest (Satterthwaite)", **kw)

out = REPO / "inference" / "datasets" / "seeds" / "published_values.csv"
with open(out, "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
ids = [r["published_id"] for r in rows]
assert len(ids) == len(set(ids)), [x for x in ids if ids.count(x) > 1][:5]
print(len(rows), "rows")
