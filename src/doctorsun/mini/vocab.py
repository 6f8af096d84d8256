"""The bilingual vocabulary of SunMed-VL-mini: what can be asked about a view, and how, in both languages.

Each attribute (modality, body region, organ, plane, image kind, colour) has values with a short answer
(open questions, MCQ choices) and a phrase for yes/no questions, in English and Chinese. Templates hold
``{x}`` where that phrase goes. Values that can both be true of one image (a whole-body scan also shows
the head) are listed in ``OVERLAPS`` and never used as each other's wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Value:
    """One value of an attribute, e.g. modality ``CT``."""

    answer: dict[str, str]
    """Short answer per language (open questions and MCQ choices)."""
    phrase: dict[str, str]
    """Noun phrase per language for the ``{x}`` of a yes/no template."""


@dataclass(frozen=True)
class Attribute:
    """Something a question can ask about a view, with its question templates per language."""

    values: dict[str, Value]
    """Value key -> value."""
    closed: dict[str, tuple[str, ...]]
    """Yes/no question templates per language (``{x}``: the value's phrase, ``{a}``: its answer)."""
    open: dict[str, tuple[str, ...]]
    """Open question templates per language."""
    mcq: dict[str, tuple[str, ...]] | None = None
    """Multiple-choice stems per language; ``None``: not asked as MCQ."""


def _v(en: str, zh: str, en_phrase: str, zh_phrase: str) -> Value:
    return Value({"en": en, "zh": zh}, {"en": en_phrase, "zh": zh_phrase})


ATTRIBUTES: dict[str, Attribute] = {
    "modality": Attribute(
        values={
            "CT": _v("CT", "CT", "a CT scan", "CT图像"),
            "MRI": _v("MRI", "MRI", "an MRI scan", "磁共振（MRI）图像"),
            "ultrasound": _v("ultrasound", "超声", "an ultrasound image", "超声图像"),
            "nuclear medicine": _v("nuclear medicine", "核医学", "a nuclear medicine scan", "核医学图像"),
            "fundus photograph": _v("fundus photograph", "眼底照相", "a fundus photograph", "眼底照片"),
            "immunohistochemistry": _v("immunohistochemistry", "免疫组化", "an immunohistochemistry slide",
                                       "免疫组化切片"),
        },
        closed={"en": ("Is this {x}?", "Is this image {x}?"), "zh": ("这是{x}吗？", "这张图像是{x}吗？")},
        open={
            "en": ("What imaging modality was used for this image?", "What is the modality of this image?",
                   "Which imaging technique produced this image?"),
            "zh": ("这是什么成像方式？", "这张图像采用的是哪种成像方式？", "该图像是用什么检查技术获得的？"),
        },
        mcq={"en": ("Which imaging modality is shown?",), "zh": ("这张图像的成像方式是？",)},
    ),
    "region": Attribute(
        values={
            "head": _v("head", "头部", "the head", "头部"),
            "chest": _v("chest", "胸部", "the chest", "胸部"),
            "abdomen": _v("abdomen", "腹部", "the abdomen", "腹部"),
            "whole body": _v("whole body", "全身", "the whole body", "全身"),
            "eye": _v("eye", "眼部", "the eye", "眼部"),
        },
        closed={"en": ("Is this an image of {x}?", "Does this image show {x}?"),
                "zh": ("这是{x}的图像吗？", "这张图像显示的是{x}吗？")},
        open={"en": ("Which part of the body is shown?", "What body region is imaged?"),
              "zh": ("图像显示的是身体的哪个部位？", "这张图像检查的是哪个部位？")},
        mcq={"en": ("Which body region does this image show?",), "zh": ("这张图像显示的身体部位是？",)},
    ),
    "organ": Attribute(
        values={
            "brain": _v("brain", "脑", "the brain", "脑"),
            "liver": _v("liver", "肝脏", "the liver", "肝脏"),
            "heart": _v("heart", "心脏", "the heart", "心脏"),
            "lymph node": _v("lymph node", "淋巴结", "a lymph node", "淋巴结"),
            "retina": _v("retina", "视网膜", "the retina", "视网膜"),
            "colon": _v("colon", "结肠", "colon tissue", "结肠组织"),
            "skeleton": _v("skeleton", "骨骼", "the skeleton", "骨骼"),
        },
        closed={"en": ("Does this image show {x}?", "Is {x} the main subject of this image?"),
                "zh": ("图中显示的是{x}吗？", "这张图像的主要对象是{x}吗？")},
        open={"en": ("Which organ or structure is the main subject of this image?", "What organ is shown?"),
              "zh": ("这张图像主要显示的是哪个器官或结构？", "图中显示的是什么器官？")},
        mcq={"en": ("Which organ is the main subject of this image?",),
             "zh": ("这张图像主要显示的器官是？", )},
    ),
    "plane": Attribute(
        values={
            "axial": _v("axial", "轴位", "an axial image", "轴位图像"),
            "coronal": _v("coronal", "冠状位", "a coronal image", "冠状位图像"),
            "sagittal": _v("sagittal", "矢状位", "a sagittal image", "矢状位图像"),
        },
        closed={"en": ("Is this {x}?", "Was this slice taken in the {a} plane?"),
                "zh": ("这是{x}吗？", "这张切面是{a}吗？")},
        open={"en": ("In which plane is this image?", "What is the imaging plane of this slice?"),
              "zh": ("这张图像是哪个扫描平面？", "该切面属于哪个方位？")},
        mcq={"en": ("In which plane was this slice taken?",), "zh": ("这张切面的方位是？",)},
    ),
    "kind": Attribute(
        values={
            "radiology": _v("radiology", "医学影像", "a radiology image", "医学影像"),
            "photograph": _v("photograph", "临床照片", "a clinical photograph", "临床照片"),
            "pathology": _v("pathology", "病理切片", "a pathology slide", "病理切片"),
        },
        closed={"en": ("Is this {x}?",), "zh": ("这是{x}吗？",)},
        open={"en": ("Is this a radiology image, a clinical photograph or a pathology slide?",),
              "zh": ("这是医学影像、临床照片还是病理切片？",)},
        mcq={"en": ("What type of image is this?",), "zh": ("这是哪一类图像？",)},
    ),
    "colour": Attribute(
        values={
            "color": _v("color", "彩色", "a color image", "彩色图像"),
            "grayscale": _v("grayscale", "灰度", "a grayscale image", "灰度图像"),
        },
        closed={"en": ("Is this {x}?",), "zh": ("这是{x}吗？",)},
        open={"en": ("Is this image in color or grayscale?",), "zh": ("这张图像是彩色的还是灰度的？",)},
    ),
}

OVERLAPS: set[frozenset[str]] = {
    frozenset(("whole body", "head")), frozenset(("whole body", "chest")),
    frozenset(("whole body", "abdomen")),
    frozenset(("whole body", "eye")), frozenset(("head", "eye")),
}
"""Pairs of values that one image can show both of: never each other's wrong answer."""

YES = {"en": "yes", "zh": "是"}
NO = {"en": "no", "zh": "否"}

CAPTION_INSTRUCTIONS = {
    "en": ("Describe this image briefly.", "Write a short caption for this medical image.",
           "What does this image show? Answer in one sentence."),
    "zh": ("请简要描述这张图像。", "请为这张医学图像写一句简短的说明。",
           "这张图像显示了什么？请用一句话回答。"),
}
GENERAL_CAPTION_INSTRUCTIONS = {
    "en": ("Describe this image briefly.", "Write a short caption for this picture."),
    "zh": ("请简要描述这张图片。", "请为这张图片写一句简短的说明。"),
}

WINDOW_NAMES = {
    "brain": ("brain", "脑窗"), "subdural": ("subdural", "硬膜下窗"), "bone": ("bone", "骨窗"),
    "lung": ("lung", "肺窗"), "mediastinum": ("mediastinal", "纵隔窗"),
    "soft_tissue": ("soft-tissue", "软组织窗"),
}
"""Named CT window -> (English adjective, Chinese name) for captions."""

PLANE_WORDS = {"axial": ("Axial", "轴位"), "coronal": ("Coronal", "冠状位"),
               "sagittal": ("Sagittal", "矢状位")}
