"""The images SunMed-VL-mini is made from: only files that installed packages ship, nothing downloaded.

Medical: pydicom's test files (CT, MRI, ultrasound, nuclear medicine), nibabel's ``anatomical.nii``
(brain MRI), scikit-image's fundus photographs and immunohistochemistry slide. General: scikit-image's
everyday photographs. Every source states what it shows, in both languages, and only what the pixels
support: attributes that cannot be read from a file (the body region of a small-field MRI) are left out
rather than guessed. Ultrasound frames are cropped to the scan sector so that the text burned into
their pixels (institution, dates, settings) never reaches the data set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from doctorsun.data.image import load_image
from doctorsun.data.pixels import NAMED_WINDOWS
from doctorsun.errors import DoctorSunError
from doctorsun.mini.vocab import PLANE_WORDS, WINDOW_NAMES


@dataclass(frozen=True)
class Base:
    """One picture views are cut from: a DICOM frame in one window, a NIfTI slice, a photograph."""

    key: str
    """Unique within its source, e.g. ``lung`` or ``axial-12``."""
    image: Image.Image
    """The decoded RGB picture."""
    group: str = ""
    """Split unit: all views of one group go to the same split; empty: each view is its own unit."""
    meta: dict = field(default_factory=dict)
    """How it was decoded (window, frame, plane, slice), copied into each record's ``meta``."""


@dataclass(frozen=True)
class Source:
    """A medical source image and everything known about it."""

    key: str
    """Short id, prefix of its view ids (``ct-chest``)."""
    origin: str
    """``package:file`` it comes from."""
    provenance: str
    """Where the package got it, for the data card."""
    licence: str
    """Licence of the file, for the data card."""
    modality: str
    """Key of the ``modality`` attribute."""
    kind: str
    """``radiology``, ``photograph`` or ``pathology``."""
    colour: str
    """``color`` or ``grayscale`` (grey sources are stored as grey so that the answer is exact)."""
    region: str | None
    """Body region, or ``None`` when the file does not tell."""
    organ: str | None
    """Main organ or structure, or ``None``."""
    plane: str | None
    """Imaging plane, or ``None`` (NIfTI sources set it per slice)."""
    captions: tuple[tuple[str, str], ...]
    """(English, Chinese) descriptions; ``{plane_en}``/``{plane_zh}`` are filled per slice."""
    load: Callable[[], list[Base]]
    """Decodes the bases."""
    n_train: int
    """Training views to make."""
    n_test: int
    """Held-out views to make."""
    crop: tuple[float, float] = (0.8, 1.0)
    """Range of the crop side as a fraction of the (squared) base side."""
    rotate: float = 8.0
    """Largest rotation in degrees."""
    flips: bool = False
    """Flips and quarter turns allowed (histology has no up or left; radiology and eyes do)."""
    fit: str = "pad"
    """``pad``: pad the base to a square first (keep all of it); ``crop``: cut squares out of it."""
    visible: frozenset[str] = frozenset()
    """Organs that may also be visible: never used as a wrong answer for this source."""


def pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None or not Path(path).is_file():
        raise DoctorSunError(f"pydicom test file {name} is not installed (the mini set never downloads)")
    return Path(path)


def skimage_file(name: str) -> Path:
    import skimage.data

    path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise DoctorSunError(f"scikit-image data file {path} is not installed (the mini set never downloads)")
    return path


def nibabel_file(name: str) -> Path:
    import nibabel

    path = Path(nibabel.__file__).parent / "tests" / "data" / name
    if not path.is_file():
        raise DoctorSunError(f"nibabel test file {path} is not installed")
    return path


def _grey(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def _windows(name: str, windows: tuple[str, ...]) -> Callable[[], list[Base]]:
    def load() -> list[Base]:
        path = pydicom_file(name)
        return [Base(w, load_image(path, window=w), meta={"window": w}) for w in windows]

    return load


def _dicom(name: str, box: tuple[int, int, int, int] | None = None, grey: bool = False,
           **options) -> Callable[[], list[Base]]:
    def load() -> list[Base]:
        image = load_image(pydicom_file(name), **options)
        image = image.crop(box) if box else image
        return [Base("image", _grey(image) if grey else image, meta=dict(options))]

    return load


def _frames(name: str, box: tuple[int, int, int, int]) -> Callable[[], list[Base]]:
    def load() -> list[Base]:
        from doctorsun.data.dicom import frame_count, read_dataset

        path = pydicom_file(name)
        n = frame_count(read_dataset(path, pixels=False))
        return [Base(f"frame-{k:02d}", _grey(load_image(path, frame=k).crop(box)), group=f"frame-{k:02d}",
                     meta={"frame": k}) for k in range(n)]

    return load


def _nifti_slices(name: str, keep: float = 0.6) -> Callable[[], list[Base]]:
    """The central ``keep`` fraction of slices of each plane (outer slices hold little brain)."""

    def load() -> list[Base]:
        from doctorsun.data.nifti import slice_count

        path, bases = nibabel_file(name), []
        for plane in PLANE_WORDS:
            n = slice_count(path, plane)
            first, last = round(n * (1 - keep) / 2), round(n * (1 + keep) / 2)
            for k in range(first, last):
                image = load_image(path, plane=plane, slice=k)
                bases.append(Base(f"{plane}-{k:02d}", image, group=f"{plane}-{k:02d}",
                                  meta={"plane": plane, "slice": k}))
        return bases

    return load


def _picture(name: str, grey: bool = False) -> Callable[[], list[Base]]:
    def load() -> list[Base]:
        image = load_image(skimage_file(name))
        return [Base("image", _grey(image) if grey else image)]

    return load


NEMA = "NEMA WG04 compression sample set, downsized/edited for pydicom's tests"
PYDICOM_LICENCE = "pydicom test data (MIT-licensed package; its README states no known restriction)"

MEDICAL: tuple[Source, ...] = (
    Source(
        "ct-chest", "pydicom:CT_small.dcm", f"{NEMA} (CT1_UNC)", PYDICOM_LICENCE,
        "CT", "radiology", "grayscale", "chest", None, "axial",
        (("Axial contrast-enhanced CT of the chest at the level of a thoracic vertebra, showing the "
          "vertebral "
          "body, spinal canal, descending aorta, paraspinal muscles and the back of both lungs.",
          "胸部增强CT轴位图像，层面位于胸椎水平，可见椎体、椎管、降主动脉、椎旁肌及双肺后部。"),
         ("Contrast-enhanced computed tomography (CT), axial slice through the thoracic spine and the "
          "descending aorta.", "计算机断层扫描（CT）增强检查，轴位层面经过胸椎和降主动脉。")),
        _windows("CT_small.dcm", ("mediastinum", "lung", "bone")), 36, 5, crop=(0.85, 1.0),
    ),
    Source(
        "ct-head", "pydicom:693_J2KI.dcm", "pydicom regression file for its issue 693 (JPEG 2000)",
        PYDICOM_LICENCE, "CT", "radiology", "grayscale", "head", "brain", "axial",
        (("Axial non-contrast CT of the head through the cerebral hemispheres, showing the skull and the "
          "brain.",
          "头部CT平扫轴位图像，层面经过大脑半球，可见颅骨和脑组织。"),
         ("Non-contrast computed tomography (CT) of the head, axial slice through the brain.",
          "头颅计算机断层扫描（CT）平扫，轴位层面经过脑组织。")),
        _windows("693_J2KI.dcm", ("brain", "subdural", "bone")), 30, 4, visible=frozenset({"skeleton"}),
    ),
    Source(
        "ct-skull-base", "pydicom:J2K_pixelrep_mismatch.dcm", "pydicom regression file for its issue 1149",
        PYDICOM_LICENCE, "CT", "radiology", "grayscale", "head", "brain", "axial",
        (("Axial CT of the head at the level of the skull base, showing the temporal lobes, brainstem, "
          "cerebellum and mastoid air cells.",
          "头部CT轴位图像，层面位于颅底水平，可见颞叶、脑干、小脑及乳突气房。"),
         ("Computed tomography (CT) of the head, axial slice through the skull base and the posterior fossa.",
          "头颅计算机断层扫描（CT），轴位层面经过颅底和颅后窝。")),
        _windows("J2K_pixelrep_mismatch.dcm", ("brain", "bone")), 30, 4,
        visible=frozenset({"skeleton", "retina"}),
    ),
    Source(
        "mr-brain", "nibabel:anatomical.nii", "nibabel test data: a low-resolution T1-weighted brain volume "
        "(2 mm voxels)", "nibabel test data (MIT licence)", "MRI", "radiology", "grayscale", "head", "brain",
        None,
        (("{plane_en} T1-weighted MRI slice of the brain: white matter brighter than grey matter, "
          "cerebrospinal fluid dark.", "脑部T1加权MRI{plane_zh}图像：白质信号高于灰质，脑脊液呈低信号。"),
         ("Magnetic resonance imaging (MRI) of the brain, {plane_lower} slice (T1-weighted).",
          "脑部磁共振成像（MRI），{plane_zh}层面（T1加权）。")),
        _nifti_slices("anatomical.nii"), 54, 8, visible=frozenset({"skeleton", "retina"}),
    ),
    Source(
        "mr-abdomen", "pydicom:examples_overlay.dcm",
        "pydicom example (MR-SIEMENS-DICOM-WithOverlays, cropped)",
        PYDICOM_LICENCE, "MRI", "radiology", "grayscale", "abdomen", "liver", "axial",
        (("Axial MRI of the upper abdomen at the level of the kidneys, showing the liver with a focal "
          "lesion, "
          "both kidneys, the spleen and the spine.",
          "上腹部MRI轴位图像，层面位于肾脏水平，可见肝内局灶性病变、双肾、脾脏和脊柱。"),
         ("Magnetic resonance imaging (MRI) of the abdomen, axial slice through the liver and both kidneys; "
          "a "
          "focal liver lesion is visible.",
          "腹部磁共振成像（MRI），轴位层面经过肝脏和双肾，可见肝内局灶性病变。")),
        _windows("examples_overlay.dcm", ("auto",)), 26, 4, crop=(0.92, 1.0), rotate=5.0,
        visible=frozenset({"colon", "skeleton", "lymph node"}),
    ),
    Source(
        "mr-small", "pydicom:MR_small.dcm", f"{NEMA} (MR1_UNC)", PYDICOM_LICENCE,
        "MRI", "radiology", "grayscale", None, None, None,
        (("Small field-of-view MRI image from a 3D, heavily T2-weighted spin-echo acquisition.",
          "小视野MRI图像，采用三维重T2加权自旋回波序列采集。"),
         ("Magnetic resonance imaging (MRI), T2-weighted, small field of view.",
          "磁共振成像（MRI），T2加权，小视野。")),
        _dicom("MR_small.dcm"), 16, 2,
    ),
    Source(
        "us-heart", "pydicom:examples_ybr_color.dcm", "pydicom example (color3d_jpeg_baseline, fewer frames)",
        PYDICOM_LICENCE, "ultrasound", "radiology", "grayscale", "chest", "heart", None,
        (("Transthoracic echocardiogram (cardiac ultrasound), apical four-chamber view showing the left and "
          "right ventricles and atria.",
          "经胸超声心动图（心脏超声），心尖四腔心切面，可见左、右心室和心房。"),
         ("Ultrasound image of the heart in an apical four-chamber view, one frame of a cine loop.",
          "心脏超声图像，心尖四腔心切面，取自动态序列中的一帧。")),
        _frames("examples_ybr_color.dcm", (40, 14, 290, 228)), 56, 8,
    ),
    Source(
        "us-node", "pydicom:examples_jpeg2k.dcm", f"{NEMA.split(',')[0]} (US1_J2KR)", PYDICOM_LICENCE,
        "ultrasound", "radiology", "color", None, "lymph node", None,
        (("Power Doppler ultrasound of a lymph node; the colour signal shows blood flow inside the node.",
          "淋巴结能量多普勒超声图像，彩色信号显示淋巴结内的血流。"),
         ("Ultrasound with power Doppler of an elongated lymph node; the orange-yellow colour marks vascular "
          "flow.", "长条形淋巴结的能量多普勒超声，橙黄色信号表示血流。")),
        _dicom("examples_jpeg2k.dcm", box=(60, 110, 580, 350)), 40, 6, crop=(0.75, 1.0), fit="crop",
    ),
    Source(
        "nm-bone", "pydicom:JPEG2000.dcm", f"{NEMA} (NM1_J2KI)", PYDICOM_LICENCE,
        "nuclear medicine", "radiology", "grayscale", "whole body", "skeleton", None,
        (("Whole-body planar bone scintigraphy (nuclear medicine bone scan) showing tracer uptake in the "
          "skeleton and activity in the urinary bladder.",
          "全身骨显像（核医学骨扫描）平面图像，可见骨骼的示踪剂摄取及膀胱内的放射性。"),
         ("Nuclear medicine whole-body bone scan, a single planar view from head to feet.",
          "核医学全身骨扫描，从头到脚的单幅平面图像。")),
        _dicom("JPEG2000.dcm"), 90, 13, crop=(0.9, 1.0), rotate=4.0, visible=frozenset({"brain"}),
    ),
    Source(
        "fundus", "scikit-image:retina.jpg", "Wikimedia Commons, fundus photograph of a normal left eye "
        "(M. Häggström)", "CC0 1.0", "fundus photograph", "photograph", "color", "eye", "retina", None,
        (("Colour fundus photograph of a normal retina, showing the optic disc, the macula and the retinal "
          "blood vessels.", "正常视网膜的彩色眼底照片，可见视盘、黄斑和视网膜血管。"),
         ("Fundus photography of the retina with the optic disc, the macula and branching retinal arteries "
          "and "
          "veins.", "眼底照相：视网膜图像，可见视盘、黄斑及分支的视网膜动静脉。")),
        _picture("retina.jpg"), 64, 9, crop=(0.85, 1.0),
    ),
    Source(
        "fundus-grey", "scikit-image:microaneurysms.png", "High-Resolution Fundus (HRF) database image "
        "07_dr, green-channel detail", "CC0 (given by the owner)", "fundus photograph", "photograph",
        "grayscale", "eye", "retina", None,
        (("Grayscale detail (green channel) of a fundus photograph from an eye with diabetic retinopathy, "
          "showing retinal vessels and small microaneurysms.",
          "糖尿病视网膜病变眼底照片的灰度局部图（绿色通道），可见视网膜血管和微动脉瘤。"),
         ("Fundus photograph detail in grayscale: retinal vessels with microaneurysms.",
          "眼底照片灰度局部：视网膜血管及微动脉瘤。")),
        _picture("microaneurysms.png", grey=True), 28, 4, crop=(0.75, 1.0),
    ),
    Source(
        "ihc", "scikit-image:ihc.png", "colonic glands stained for FHL2 with DAB and hematoxylin (CMMI)",
        "no known copyright restrictions", "immunohistochemistry", "pathology", "color", None, "colon", None,
        (("Immunohistochemistry (IHC) of colonic glands: brown DAB staining marks the target protein and "
          "blue hematoxylin counterstains the nuclei.",
          "结肠腺体的免疫组化（IHC）染色：棕色DAB显示目标蛋白，蓝色苏木精复染细胞核。"),
         ("Pathology slide with immunohistochemical staining of colon tissue (brown DAB, blue hematoxylin).",
          "结肠组织免疫组化染色的病理切片（棕色为DAB，蓝色为苏木精）。")),
        _picture("ihc.png"), 92, 13, crop=(0.35, 1.0), rotate=0.0, flips=True,
    ),
)


@dataclass(frozen=True)
class General:
    """An everyday (non-medical) photograph for the general part."""

    key: str
    """Short id."""
    file: str
    """File name in ``skimage/data``."""
    subject: tuple[str, str]
    """Short answer to "what is the main subject" (en, zh)."""
    phrase: tuple[str, str]
    """Noun phrase for "Is there {x} in this image?" (en, zh)."""
    caption: tuple[str, str]
    """Caption (en, zh)."""
    colour: str
    """``color`` or ``grayscale``."""
    flips: bool = True
    """Mirror views allowed (not for text or clocks)."""
    also: frozenset[str] = frozenset()
    """Other general keys whose subject may also be in this picture: never a wrong answer here."""


GENERAL: tuple[General, ...] = (
    General("astronaut", "astronaut.png", ("astronaut", "宇航员"), ("an astronaut", "宇航员"),
            ("A smiling astronaut in an orange spacesuit, with a flag and a model of the space shuttle "
             "behind her.",
             "一名身穿橙色航天服、面带微笑的宇航员，身后有国旗和航天飞机模型。"), "color",
            also=frozenset({"camera", "rocket"})),
    General("coffee", "coffee.png", ("coffee", "咖啡"), ("a cup of coffee", "一杯咖啡"),
            ("A cup of coffee on a red saucer with a spoon, on a wooden table.",
             "木桌上放着一杯咖啡，配有红色碟子和小勺。"),
            "color"),
    General("cat", "chelsea.png", ("cat", "猫"), ("a cat", "猫"),
            ("Close-up of the face of a tabby cat.", "一只虎斑猫的面部特写。"), "color"),
    General("rocket", "rocket.jpg", ("rocket", "火箭"), ("a rocket", "火箭"),
            ("A rocket standing on its launch pad at dusk, between lightning towers.",
             "黄昏时分，一枚火箭矗立在发射台上，两旁是避雷塔。"), "color", also=frozenset({"astronaut"})),
    General("camera", "camera.png", ("photographer", "摄影师"), ("a photographer", "摄影师"),
            ("A black-and-white photo of a man in a dark coat using a camera on a tripod.",
             "一张黑白照片：一名穿深色外套的男子正在使用三脚架上的相机。"), "grayscale",
            also=frozenset({"astronaut", "grass"})),
    General("coins", "coins.png", ("coins", "硬币"), ("coins", "硬币"),
            ("Rows of ancient coins on a dark background.", "深色背景上成排摆放的古代钱币。"), "grayscale"),
    General("moon", "moon.png", ("moon", "月球"), ("the surface of the Moon", "月球表面"),
            ("A grayscale close-up of the cratered surface of the Moon.", "月球表面的灰度特写，可见陨石坑。"),
            "grayscale", also=frozenset({"galaxies"})),
    General("galaxies", "hubble_deep_field.jpg", ("galaxies", "星系"), ("galaxies", "星系"),
            ("A deep-space telescope image with many small galaxies of different colours on a black sky.",
             "一张深空望远镜图像：黑色天空中有许多不同颜色的小星系。"), "color", also=frozenset({"moon"})),
    General("motorcycle", "motorcycle_left.png", ("motorcycle", "摩托车"), ("a motorcycle", "摩托车"),
            ("A red motorcycle parked in a garage.", "一辆停在车库里的红色摩托车。"), "color"),
    General("brick", "brick.png", ("brick wall", "砖墙"), ("a brick wall", "砖墙"),
            ("A grayscale photo of a brick wall.", "一面砖墙的灰度照片。"), "grayscale",
            also=frozenset({"gravel"})),
    General("grass", "grass.png", ("grass", "草地"), ("grass", "草"),
            ("A grayscale close-up of grass.", "草地的灰度特写。"), "grayscale", also=frozenset({"gravel"})),
    General("gravel", "gravel.png", ("gravel", "碎石"), ("gravel", "碎石"),
            ("A grayscale close-up of gravel.", "碎石的灰度特写。"), "grayscale",
            also=frozenset({"grass", "brick"})),
    General("page", "page.png", ("text", "文字"), ("printed text", "印刷文字"),
            ("A scanned page of printed text under a heading.", "一页带标题的印刷文字扫描图像。"),
            "grayscale",
            flips=False),
    General("clock", "clock_motion.png", ("clock", "时钟"), ("a clock", "时钟"),
            ("A motion-blurred photo of a round clock.", "一张运动模糊的圆形时钟照片。"), "grayscale",
            flips=False),
    General("color-wheel", "color.png", ("color wheel", "色轮"), ("a color wheel", "色轮"),
            ("A color wheel showing the full range of hues.", "一个展示各种色调的色轮。"), "color",
            flips=False),
)


def window_sentence(window: str | None) -> tuple[str, str]:
    """The caption's sentence about the CT window used, in (en, zh); empty for non-CT windows."""
    if window not in WINDOW_NAMES:
        return "", ""
    center, width = NAMED_WINDOWS[window]
    adjective, zh = WINDOW_NAMES[window]
    return (f" Shown in a {adjective} window (width {width:g} HU, level {center:g} HU).",
            f"以{zh}显示（窗宽{width:g} HU，窗位{center:g} HU）。")
