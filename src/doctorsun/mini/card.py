"""The data card (README.md) of a SunMed-VL-mini build: what is in it, where it comes from, how it was
made, and what it can and cannot tell you. Written only from the build's own summary and records, so it
is as reproducible as the data."""

from __future__ import annotations

from pathlib import Path

from doctorsun.mini.general import GENERAL, VIEWS_PER_IMAGE
from doctorsun.mini.sources import MEDICAL
from doctorsun.mini.text import FACTS
from doctorsun.mini.views import SIZE
from doctorsun.model.chat import PLACEHOLDER

PURPOSE = {
    "align_train.jsonl": "captions of training views (alignment stage)",
    "instruct_train.jsonl": "yes/no, open and multiple-choice questions on training views (instruction "
    "tuning)",
    "test.jsonl": "the same question kinds on held-out views only (evaluation)",
    "general.jsonl": "everyday photographs, captions and questions (general data for mixing)",
    "text_train.jsonl": "medical question/answer text, no image (text stage)",
}


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _example(records: list[dict], task: str) -> list[str]:
    pair = [r for r in records if r["task"] == task][:2]
    lines = []
    for r in pair:
        question = PLACEHOLDER.sub("", r["conversations"][0]["value"]).replace("\n", " / ")
        lines.append(f"- `{r['id']}` ({r['image']}): {question} → **{r['conversations'][-1]['value']}**")
    return lines


def write_card(path: Path, summary: dict, files: dict[str, list[dict]]) -> None:
    s = summary
    lines = [
        f"# {s['name']}",
        "",
        "A small bilingual (English/Chinese) medical image-text data set, generated reproducibly from the "
        "real "
        "medical images that installed Python packages ship (pydicom, nibabel, scikit-image). It exists so "
        "that "
        "the whole DoctorSun pipeline (vision adaptation, alignment, instruction tuning, evaluation) can run "
        "and "
        "show learning on a laptop CPU with nothing downloaded. It is not a benchmark of clinical ability "
        "and "
        "must not be used for clinical decisions.",
        "",
        f"Built with seed {s['seed']} by `doctorsun data mini --out DIR --seed {s['seed']}` "
        f"(format version {s['format_version']}). The same seed and the library versions listed at the end "
        "give byte-identical files.",
        "",
        "## Files",
        "",
        *_table(["file", "records", "tasks", "languages", "purpose"],
                [[f"`{name}`", s["records"][name], _pairs(s["by_task"][name]), _pairs(s["by_lang"][name]),
                  PURPOSE[name]] for name in PURPOSE]),
        "",
        f"`images/` holds {s['images']} views as 8-bit RGB PNG, {SIZE} x {SIZE} pixels: "
        f"{s['views']['train']} "
        f"training and {s['views']['test']} held-out medical views, and {s['views']['general']} general "
        f"ones. "
        "`summary.json` holds every count in this card. Records follow the SunMed-VL schema; `image` paths "
        "are "
        "relative to this folder; every item exists in both languages with the same id stem (`-en`/`-zh`); "
        "`meta` holds the modality, body region, organ, plane, image kind, colour, the view id, the source "
        "file "
        "and the augmentation that made the view.",
        "",
        f"`general-text/` holds {s['general_text']['knowledge_questions']['en']} everyday-knowledge questions "
        "with four options, in English (`mmlu/`, MMLU's release layout) and Chinese (`cmmlu/`, CMMLU's "
        "layout), read by `doctorsun eval --bench mmlu|cmmlu` (the quickstart scores them with "
        "`--scoring likelihood`): they show whether medical training kept the LLM's general knowledge. "
        "They are never trained on.",
        "",
        "## Sources and licences",
        "",
        *_table(["view id", "file", "modality", "region / organ", "provenance", "licence", "train", "test"],
                [[f"`{src.key}`", src.origin, src.modality, f"{src.region or '–'} / {src.organ or '–'}",
                  src.provenance, src.licence, row["train_views"], row["test_views"]]
                 for src, row in zip(MEDICAL, s["sources"], strict=True)]),
        "",
        "General photographs (scikit-image sample data; each is CC0, public domain or without known "
        f"restrictions per `skimage.data`), {VIEWS_PER_IMAGE} views each: "
        + ", ".join(f"{g.file} ({g.subject[0]})" for g in GENERAL) + ".",
        "",
        "## Composition",
        "",
        *_table(["modality", "train views", "test views", "captions", "instruct records", "test records"],
                [[m, s["views_by_modality"]["train"].get(m, 0), s["views_by_modality"]["test"].get(m, 0),
                  s["by_modality"]["align_train.jsonl"].get(m, 0),
                  s["by_modality"]["instruct_train.jsonl"].get(m, 0),
                  s["by_modality"]["test.jsonl"].get(m, 0)] for m in s["views_by_modality"]["train"]]),
        "",
        "Questions by attribute and form (records, both languages):",
        "",
        *_table(["attribute/form", "instruct_train", "test"],
                [[k, v, s["by_question"]["test.jsonl"].get(k, 0)]
                 for k, v in s["by_question"]["instruct_train.jsonl"].items()]),
        "",
        "Yes/no answers: " + "; ".join(f"{name}: {_pairs(c)}" for name, c in s["closed_answers"].items())
        + ".",
        "",
        ("Training answers to yes/no and multiple-choice questions name what the image shows before the "
         "verdict (\"MRI, so no\", \"CT，B\"); the held-out golds are the bare verdicts, and `meta.verdict` "
         "holds the verdict in both." if s.get("reasoned_answers") else
         "Answers to yes/no and multiple-choice questions are the bare verdicts (`--bare-answers`)."),
        "",
        "Examples:",
        "",
        *_example(files["instruct_train.jsonl"], "vqa-closed"),
        *_example(files["instruct_train.jsonl"], "vqa-open"),
        *_example(files["instruct_train.jsonl"], "mcq"),
        *_example(files["align_train.jsonl"], "caption"),
        "",
        "## How it was made",
        "",
        "1. **Decoding** with `doctorsun.data.image.load_image`: CT slices in standard named windows "
        "(mediastinal, "
        "lung, bone, brain, subdural; centre/width in HU are given in each caption), DICOM MRI with the "
        "window stored in the file, the NIfTI brain volume as axial, coronal and sagittal slices (central "
        "60% of each plane; "
        "radiological display), every frame of the echocardiography cine loop, the whole-body bone scan, the "
        "photographs and the slide. Ultrasound frames are cropped to the scan area so that the text burned "
        "into their pixels (institution, dates, machine settings) is left out (the Doppler study to the "
        "area around the node); greyscale sources are stored as exact grey.",
        "2. **Views**: each view is a random square crop (kept large enough to hold the described anatomy), "
        "a small rotation (up to 8 degrees; none for the slide), brightness and contrast changes "
        "(x0.85 to x1.15), resized to 128 px. Flips and quarter turns are used only for the histology slide "
        "(left-right flips would change laterality in radiology and in the eye), mirror images only for "
        "general photographs without text.",
        "3. **Split by view, before any question is written**: sources with many frames or slices hold out "
        "whole frames/slices (stratified by plane); the others hold out views. No image file of "
        "`test.jsonl` appears in any training file, and every source, hence every modality, has test views.",
        "4. **Questions** ask what the pixels show: imaging modality, body region, main organ, imaging "
        "plane, image kind (radiology, clinical photograph, pathology slide) and colour vs grayscale. Each "
        "view gets one modality question and two others; each is phrased as yes/no, open (short answer) or "
        "multiple choice with 3 to 4 options, through the project's one prompt builder "
        "(`doctorsun.data.prompts`), so training asks exactly as evaluation does. Wrong options and 'no' "
        "questions only use values that cannot also be true of the image (a whole-body scan also shows the "
        "head; an abdominal MRI may show the colon), and yes/no answers are balanced per attribute.",
        "5. **Captions** are written per source by hand in both languages, stating only what the image and "
        "its file support, with the plane and CT window of the view.",
        f"6. **Text**: {len(FACTS)} hand-written facts plus one per common CT window, about imaging physics, "
        f"CT "
        "values and windows, MRI contrast, ultrasound, nuclear medicine, the eye, pathology stains, anatomy, "
        "vital signs and medical image data, each as a question and a short answer in both languages.",
        "",
        "## Privacy",
        "",
        "Only pixels are copied: no DICOM header value (names, IDs, dates, institutions) is read into any "
        "record, caption or log, and views are stored as PNG, which carries no patient metadata. The source "
        "files are public test data (pydicom's README notes that real-looking patient names were edited "
        "out); text burned into ultrasound pixels is cropped away as described above.",
        "",
        "## Limitations",
        "",
        "- There are only 12 medical source images. Held-out views are unseen crops, windows, frames and "
        "slices of those same images, not unseen patients: test scores show that a model learned to read "
        "these "
        "visual attributes, not that it generalises clinically.",
        "- Attributes are coarse (modality, region, organ, plane, kind, colour); there are no findings or "
        "diagnoses to learn from 12 images.",
        "- Several sources are heavily compressed or downsized test files (JPEG 2000 lossy CT and NM, a 64 "
        "px "
        "MRI); images look worse than clinical ones.",
        "",
        "## Software",
        "",
        ", ".join(f"{k} {v}" for k, v in s["software"].items()) + ".",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
