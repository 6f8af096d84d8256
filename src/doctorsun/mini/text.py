"""Medical text snippets for the text stage: short, settled facts as question/answer pairs, en and zh.

Kept to textbook facts about imaging, anatomy and the data this project handles, so that a reader can
check every line; nothing here is clinical advice.
"""

from __future__ import annotations

from doctorsun.data.pixels import NAMED_WINDOWS
from doctorsun.data.prompts import open_prompt

# (topic, English question, English answer, Chinese question, Chinese answer)
FACTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("terms", "What does CT stand for?", "Computed tomography.", "CT是什么的缩写？",
     "计算机断层扫描（computed tomography）。"),
    ("terms", "What does MRI stand for?", "Magnetic resonance imaging.", "MRI是什么的缩写？",
     "磁共振成像（magnetic resonance imaging）。"),
    ("terms", "What does PET stand for in medical imaging?", "Positron emission tomography.",
     "医学影像中的PET是什么的缩写？", "正电子发射断层扫描（positron emission tomography）。"),
    ("terms", "What does SPECT stand for?", "Single-photon emission computed tomography.",
     "SPECT是什么的缩写？",
     "单光子发射计算机断层扫描（single-photon emission computed tomography）。"),
    ("terms", "What does IHC stand for in pathology?", "Immunohistochemistry.", "病理学中的IHC指什么？",
     "免疫组织化学（immunohistochemistry），简称免疫组化。"),
    ("terms", "What is DICOM?",
     "Digital Imaging and Communications in Medicine: the standard file format and "
     "network protocol for medical images.", "DICOM是什么？",
     "医学数字成像和通信（Digital Imaging and Communications in "
     "Medicine）标准，是医学图像的通用文件格式和网络传输协议。"),
    ("terms", "What is a NIfTI file?",
     "A file format for 3-D and 4-D imaging volumes, common in neuroimaging "
     "research.", "NIfTI文件是什么？", "一种存储三维和四维影像体数据的文件格式，常用于神经影像研究。"),
    ("terms", "What is the unit of CT values?", "The Hounsfield unit (HU).", "CT值的单位是什么？",
     "亨氏单位（Hounsfield unit，HU）。"),
    ("radiation", "Does CT use ionizing radiation?", "Yes. CT uses X-rays, which are ionizing radiation.",
     "CT检查有电离辐射吗？", "有。CT使用X射线，属于电离辐射。"),
    ("radiation", "Does MRI use ionizing radiation?",
     "No. MRI uses a strong magnetic field and radiofrequency "
     "pulses.", "磁共振检查有电离辐射吗？", "没有。磁共振利用强磁场和射频脉冲成像。"),
    ("radiation", "Does ultrasound use ionizing radiation?",
     "No. Ultrasound uses high-frequency sound waves.",
     "超声检查有电离辐射吗？", "没有。超声利用高频声波成像。"),
    ("radiation", "Does a nuclear medicine bone scan involve ionizing radiation?",
     "Yes. The patient receives "
     "a radioactive tracer that emits gamma rays.", "核医学骨扫描涉及电离辐射吗？",
     "涉及。患者需注射发射γ射线的放射性示踪剂。"),
    ("radiation", "Does fundus photography use ionizing radiation?", "No. It photographs the retina with "
     "visible light.", "眼底照相有电离辐射吗？", "没有。它用可见光拍摄视网膜。"),
    ("radiation", "Does a plain X-ray radiograph use ionizing radiation?",
     "Yes. X-rays are ionizing radiation, "
     "although the dose of a single chest radiograph is low.", "普通X线摄影有电离辐射吗？",
     "有。X射线属于电离辐射，但单次胸片的剂量很低。"),
    ("physics", "How does CT form an image?",
     "An X-ray tube rotates around the patient, detectors measure how "
     "much the beam is attenuated from many angles, and a computer reconstructs cross-sectional slices.",
     "CT是如何成像的？", "X射线管围绕患者旋转，探测器从多个角度测量射线的衰减，再由计算机重建出断层图像。"),
    ("physics", "How does MRI form an image?", "Hydrogen nuclei in a strong magnetic field are excited by "
     "radiofrequency pulses; the signals they give off while relaxing are spatially encoded with gradient "
     "fields and reconstructed into images.", "磁共振是如何成像的？",
     "处于强磁场中的氢原子核被射频脉冲激发，弛豫时发出的信号经梯度磁场进行空间编码后重建成图像。"),
    ("physics", "How does ultrasound form an image?", "A probe sends pulses of high-frequency sound into the "
     "body and records the echoes from tissue interfaces; the echo delay gives depth and its strength gives "
     "brightness.", "超声是如何成像的？",
     "探头向体内发射高频声波脉冲并接收组织界面的回声，回声延迟决定深度，回声强度决定亮度。"),
    ("physics", "How does a gamma camera make a nuclear medicine image?", "A radioactive tracer given to the "
     "patient collects in the target tissue; the gamma camera detects the emitted gamma rays and maps where "
     "the tracer is.", "核医学中γ相机是如何成像的？",
     "注入体内的放射性示踪剂聚集在靶组织中，γ相机探测其发出的γ射线，显示示踪剂的分布。"),
    ("physics", "What does a PET scanner detect?",
     "Pairs of 511 keV photons, produced when positrons from the "
     "tracer annihilate with electrons, detected in coincidence.", "PET探测的是什么？",
     "示踪剂发出的正电子与电子湮灭时产生的成对511 keV光子，通过符合探测记录。"),
    ("physics", "What is fundus photography?", "Photography of the back of the eye through the pupil with a "
     "fundus camera, showing the retina, optic disc, macula and retinal vessels.", "什么是眼底照相？",
     "用眼底相机通过瞳孔拍摄眼球后部，可显示视网膜、视盘、黄斑和视网膜血管。"),
    ("physics", "What is immunohistochemistry?", "A staining method in which antibodies bind a specific "
     "protein in a tissue section and a coloured product, often brown DAB, shows where the protein is.",
     "什么是免疫组化？",
     "一种染色方法：抗体与组织切片中的特定蛋白结合，再通过显色物质（常为棕色的DAB）显示该蛋白的位置。"),
    ("physics", "What is a radiograph?", "An X-ray image made by passing X-rays through the body onto a "
     "detector; dense tissues such as bone look white.", "什么是X线片？",
     "X射线穿过人体投射到探测器上形成的图像；骨骼等致密组织呈白色。"),
    ("ct", "What is the CT value of water?", "0 HU, by definition.", "水的CT值是多少？", "按定义为0 HU。"),
    ("ct", "What is the CT value of air?", "About -1000 HU.", "空气的CT值是多少？", "约-1000 HU。"),
    ("ct", "What is the typical CT value of fat?", "Roughly -100 HU (about -150 to -50 HU).",
     "脂肪的CT值大约是多少？", "约-100 HU（大致在-150至-50 HU之间）。"),
    ("ct", "What is the typical CT value of dense cortical bone?", "Several hundred to over 1000 HU.",
     "致密骨皮质的CT值大约是多少？", "数百至1000 HU以上。"),
    ("ct", "Why does bone look white on CT?",
     "Bone strongly attenuates X-rays, so its CT values are high and "
     "are displayed bright.", "为什么骨骼在CT上呈白色？", "骨骼对X射线衰减强，CT值高，因此显示为亮白色。"),
    ("ct", "Why do the lungs look dark on CT?",
     "They are mostly air, which barely attenuates X-rays, so their "
     "CT values are very low (around -900 to -700 HU).", "为什么肺在CT上呈黑色？",
     "肺内主要是空气，对X射线几乎不衰减，CT值很低（约-900至-700 HU）。"),
    ("ct", "What is windowing in CT?", "Choosing which range of CT values is spread over the grey scale: the "
     "level is the centre of the range and the width its size.", "什么是CT的窗宽窗位？",
     "选择把哪一段CT值范围映射到灰阶上：窗位是该范围的中心，窗宽是范围的大小。"),
    ("ct", "What does a wider window do to a CT image?", "It shows a wider range of CT values, with less "
     "contrast between similar tissues.", "增大窗宽对CT图像有什么影响？",
     "显示的CT值范围更大，但相近组织之间的对比度降低。"),
    ("ct", "What does raising the window level do to a CT image?", "The image gets darker, because higher CT "
     "values are needed to appear white.", "提高窗位会使CT图像怎样变化？",
     "图像整体变暗，因为需要更高的CT值才能显示为白色。"),
    ("ct", "What is contrast-enhanced CT?", "CT performed after intravenous iodinated contrast, which makes "
     "vessels and well-perfused tissues brighter.", "什么是增强CT？",
     "静脉注射碘对比剂后进行的CT检查，血管和血供丰富的组织会变亮。"),
    ("ct", "What does acute intracranial bleeding look like on non-contrast CT?", "Bright (hyperdense) "
     "compared with brain tissue.", "急性颅内出血在CT平扫上表现如何？", "与脑组织相比呈高密度（亮）。"),
    ("ct", "Which imaging test is first-line for suspected acute intracranial haemorrhage?",
     "Non-contrast CT of the head.", "怀疑急性颅内出血时首选哪种影像检查？", "头颅CT平扫。"),
    ("planes", "Which plane divides the body into upper and lower parts?", "The axial (transverse) plane.",
     "哪个平面把人体分为上下两部分？", "轴位（横断面）。"),
    ("planes", "Which plane divides the body into front and back parts?", "The coronal plane.",
     "哪个平面把人体分为前后两部分？", "冠状面。"),
    ("planes", "Which plane divides the body into left and right parts?", "The sagittal plane.",
     "哪个平面把人体分为左右两部分？", "矢状面。"),
    ("planes", "On an axial CT or MRI image shown in the radiological convention, where is the patient's "
     "right side?", "On the viewer's left.", "按放射学惯例显示的轴位CT或MRI图像中，患者的右侧显示在哪里？",
     "显示在观察者的左侧。"),
    ("planes", "What is at the top of a standard axial image?", "The front (anterior side) of the patient.",
     "标准轴位图像的上方是患者的哪一侧？", "前方（腹侧）。"),
    ("mri", "How does cerebrospinal fluid appear on T1-weighted MRI?", "Dark (low signal).",
     "脑脊液在T1加权像上表现如何？", "呈低信号（暗）。"),
    ("mri", "How does cerebrospinal fluid appear on T2-weighted MRI?", "Bright (high signal).",
     "脑脊液在T2加权像上表现如何？", "呈高信号（亮）。"),
    ("mri", "On T1-weighted brain MRI, which is brighter: white matter or grey matter?", "White matter.",
     "在T1加权脑部MRI上，白质和灰质哪个更亮？", "白质更亮。"),
    ("mri", "What does a FLAIR sequence suppress?", "The signal of free fluid such as cerebrospinal fluid.",
     "FLAIR序列抑制的是什么信号？", "自由水（如脑脊液）的信号。"),
    ("mri", "How does fat appear on T1-weighted MRI?", "Bright (high signal).", "脂肪在T1加权像上表现如何？",
     "呈高信号（亮）。"),
    ("mri", "Why is metal checked for before MRI?",
     "The strong magnetic field pulls on ferromagnetic objects "
     "and can affect some implants, such as certain pacemakers.", "为什么磁共振检查前要检查金属物品？",
     "强磁场会吸引铁磁性物体，并可能影响某些植入物（如部分心脏起搏器）。"),
    ("mri", "What is gadolinium used for in MRI?",
     "As an intravenous contrast agent: it shortens T1 and makes "
     "enhancing tissue brighter on T1-weighted images.", "钆在磁共振检查中有什么作用？",
     "作为静脉对比剂缩短T1，使强化组织在T1加权像上变亮。"),
    ("ultrasound", "What does Doppler ultrasound measure?", "Blood flow, from the frequency shift of echoes "
     "returned by moving blood.", "多普勒超声测量什么？", "血流，依据运动血液回声的频率偏移。"),
    ("ultrasound", "What does power Doppler show?",
     "The strength of the flow signal; it is sensitive to slow "
     "flow but does not show its direction.", "能量多普勒显示什么？",
     "血流信号的强度，对低速血流敏感，但不显示血流方向。"),
    ("ultrasound", "What is echocardiography?", "Ultrasound imaging of the heart.", "什么是超声心动图？",
     "心脏的超声检查。"),
    ("ultrasound", "Which chambers are seen in the apical four-chamber view?",
     "Both atria and both ventricles.",
     "心尖四腔心切面可见哪些心腔？", "左、右心房和左、右心室。"),
    ("ultrasound", "Why is gel put on the skin for an ultrasound scan?",
     "To remove the air between probe and "
     "skin, because air blocks sound waves.", "为什么超声检查时要在皮肤上涂耦合剂？",
     "排除探头与皮肤之间的空气，因为空气会阻挡声波。"),
    ("ultrasound", "Why is ultrasound the first choice for imaging in pregnancy?", "It uses no ionizing "
     "radiation.", "为什么孕期影像检查首选超声？", "因为超声没有电离辐射。"),
    ("ultrasound", "How does simple fluid look on ultrasound?", "Dark (anechoic).",
     "单纯液体在超声上表现如何？",
     "呈无回声（黑色）。"),
    ("ultrasound", "What is a cine loop in ultrasound?", "A short sequence of frames recorded over time, for "
     "example one heartbeat.", "超声中的动态序列（cine loop）是什么？",
     "随时间记录的一段连续帧，例如一个心动周期。"),
    ("ultrasound", "Which imaging test is usually first for suspected gallstones?", "Ultrasound.",
     "怀疑胆结石时通常首选哪种影像检查？", "超声。"),
    ("nuclear-medicine", "Which tracer is commonly used for bone scintigraphy?", "Technetium-99m-labelled "
     "diphosphonates such as 99mTc-MDP.", "骨显像常用哪种示踪剂？", "锝-99m标记的二膦酸盐，例如99mTc-MDP。"),
    ("nuclear-medicine", "What does increased uptake on a bone scan mean?", "Increased bone turnover; the "
     "finding is sensitive but not specific (fracture, infection, arthritis or metastasis).",
     "骨扫描上摄取增高说明什么？", "骨代谢增高；该表现敏感但不特异，可见于骨折、感染、关节炎或转移瘤等。"),
    ("nuclear-medicine", "Why is the urinary bladder bright on a bone scan?",
     "Tracer that is not taken up by "
     "bone is excreted by the kidneys into the urine.", "为什么骨扫描上膀胱很亮？",
     "未被骨摄取的示踪剂经肾脏排入尿液。"),
    ("nuclear-medicine", "What is the half-life of technetium-99m?", "About 6 hours.",
     "锝-99m的半衰期是多少？",
     "约6小时。"),
    ("nuclear-medicine", "What does FDG PET show?", "Glucose uptake, which is high in many cancers, in the "
     "brain and in inflamed tissue.", "FDG PET显示什么？",
     "葡萄糖摄取，在多数肿瘤、脑组织和炎症组织中较高。"),
    ("ophthalmology", "What is the optic disc?",
     "Where the optic nerve and the retinal vessels leave the eye; "
     "it has no photoreceptors and forms the blind spot.", "什么是视盘？",
     "视神经和视网膜血管出入眼球的部位，没有感光细胞，形成生理盲点。"),
    ("ophthalmology", "What is the macula?",
     "The central part of the retina that gives sharp central vision; "
     "the fovea is at its centre.", "什么是黄斑？", "视网膜中央负责精细中心视力的区域，其中心为中央凹。"),
    ("ophthalmology", "What are retinal microaneurysms?",
     "Small outpouchings of retinal capillaries, seen as "
     "tiny red dots; they are the earliest visible sign of diabetic retinopathy.", "什么是视网膜微动脉瘤？",
     "视网膜毛细血管的微小膨出，表现为细小红点，是糖尿病视网膜病变最早可见的体征。"),
    ("ophthalmology", "Why do people with diabetes have fundus photographs taken?", "To screen for diabetic "
     "retinopathy.", "为什么糖尿病患者要做眼底照相？", "用于筛查糖尿病视网膜病变。"),
    ("pathology", "What colour does DAB give in immunohistochemistry?",
     "Brown, where the antibody has bound.",
     "免疫组化中DAB显示什么颜色？", "棕色，出现在抗体结合的部位。"),
    ("pathology", "What does hematoxylin stain?", "Cell nuclei, blue to purple.", "苏木精染什么？",
     "细胞核，呈蓝紫色。"),
    ("pathology", "What is H&E staining?", "Hematoxylin and eosin, the routine histology stain: nuclei "
     "blue-purple, cytoplasm and matrix pink.", "什么是HE染色？",
     "苏木精-伊红染色，是常规组织学染色：细胞核呈蓝紫色，胞质和间质呈粉红色。"),
    ("pathology", "What is the counterstain in immunohistochemistry for?", "It colours the rest of the "
     "tissue, usually nuclei with hematoxylin, so that the structure around the brown signal can be seen.",
     "免疫组化中的复染有什么作用？", "给其余组织着色（通常用苏木精染细胞核），以便看清棕色信号周围的结构。"),
    ("pathology", "What are colonic crypts?", "Tubular glands of the colonic mucosa, lined by an epithelium "
     "rich in goblet cells.", "什么是结肠隐窝？", "结肠黏膜中的管状腺体，上皮中富含杯状细胞。"),
    ("pathology", "Why is Ki-67 stained by immunohistochemistry?", "It marks proliferating cells, so it "
     "indicates how actively a tumour is growing.", "为什么要做Ki-67免疫组化？",
     "Ki-67标记处于增殖期的细胞，可反映肿瘤的增殖活性。"),
    ("anatomy", "Which organ produces bile?", "The liver.", "哪个器官产生胆汁？", "肝脏。"),
    ("anatomy", "Where is the spleen?", "In the left upper quadrant of the abdomen, under the ribs.",
     "脾脏位于哪里？", "左上腹，肋骨下方。"),
    ("anatomy", "How many chambers does the human heart have?", "Four: two atria and two ventricles.",
     "人的心脏有几个腔？", "四个：两个心房和两个心室。"),
    ("anatomy", "Which vessel carries blood from the left ventricle to the body?", "The aorta.",
     "哪条血管把血液从左心室输送到全身？", "主动脉。"),
    ("anatomy", "What protects the spinal cord?", "The vertebral column, inside the spinal canal.",
     "什么结构保护脊髓？", "脊柱，脊髓位于椎管内。"),
    ("anatomy", "Which lobe of the brain processes vision?", "The occipital lobe.",
     "大脑哪个脑叶负责视觉处理？",
     "枕叶。"),
    ("anatomy", "What is the largest solid organ in the abdomen?", "The liver.",
     "腹腔中最大的实质性器官是什么？",
     "肝脏。"),
    ("anatomy", "What do the kidneys do?",
     "They filter the blood to make urine and keep the balance of water, "
     "salts and acid.", "肾脏有什么功能？", "过滤血液生成尿液，并维持水、电解质和酸碱平衡。"),
    ("anatomy", "What is a lymph node?", "A small organ of the immune system that filters lymph and holds "
     "lymphocytes.", "什么是淋巴结？", "免疫系统的小器官，过滤淋巴液并聚集淋巴细胞。"),
    ("anatomy", "Where is cerebrospinal fluid found?",
     "In the ventricles of the brain and in the subarachnoid "
     "space around the brain and spinal cord.", "脑脊液存在于哪里？", "脑室以及脑和脊髓周围的蛛网膜下腔。"),
    ("anatomy", "What connects the two cerebral hemispheres?", "The corpus callosum.",
     "连接左右大脑半球的主要结构是什么？", "胼胝体。"),
    ("anatomy", "Along which side of the spine does the descending thoracic aorta usually run?",
     "The left side.",
     "胸段降主动脉通常沿脊柱的哪一侧下行？", "左侧。"),
    ("anatomy", "Which bone structure protects the brain?", "The skull (cranium).",
     "保护大脑的骨性结构是什么？",
     "颅骨。"),
    ("clinical", "What is a normal resting heart rate for adults?", "About 60 to 100 beats per minute.",
     "成人静息心率的正常范围是多少？", "约每分钟60至100次。"),
    ("clinical", "What is a normal respiratory rate for adults at rest?",
     "About 12 to 20 breaths per minute.",
     "成人静息呼吸频率的正常范围是多少？", "约每分钟12至20次。"),
    ("clinical", "How is body mass index (BMI) calculated?", "Weight in kilograms divided by the square of "
     "height in metres.", "体重指数（BMI）如何计算？", "体重（千克）除以身高（米）的平方。"),
    ("clinical", "What is a normal oxygen saturation (SpO2) at rest in healthy adults?", "About 95% to 100%.",
     "健康成人静息时血氧饱和度（SpO2）的正常值是多少？", "约95%至100%。"),
    ("clinical", "What is a normal body temperature for adults?", "About 36.5 to 37.5 °C; it varies with the "
     "site of measurement.", "成人正常体温是多少？", "约36.5至37.5 °C，随测量部位不同而有差异。"),
    ("data", "What does MONOCHROME1 mean in a DICOM file?", "The grey scale is inverted: the lowest pixel "
     "values are displayed white.", "DICOM文件中的MONOCHROME1是什么意思？",
     "灰阶反转：像素值越低，显示越白。"),
    ("data", "What are the rescale slope and intercept in a CT DICOM file?", "The linear mapping from stored "
     "pixel values to Hounsfield units: HU = value × slope + intercept.",
     "CT的DICOM文件中的rescale slope和intercept是什么？",
     "把存储的像素值线性换算为CT值的参数：HU = 像素值 × slope + intercept。"),
    ("data", "Why must medical images be de-identified before they are shared for research?", "To protect "
     "patient privacy: names, IDs, birth dates and other identifying data must be removed from the file and "
     "from the pixels.", "为什么医学图像在科研共享前必须去标识化？",
     "为了保护患者隐私，必须从文件信息和图像像素中去除姓名、编号、出生日期等可识别信息。"),
    ("data", "What is burned-in annotation in a medical image?",
     "Text drawn into the pixels themselves, such as "
     "names, dates or settings; removing header tags does not remove it.", "医学图像中的“烧录注释”是什么？",
     "直接写入像素中的文字，如姓名、日期或参数；删除文件头标签并不能去除它们。"),
    ("data", "What is a multi-frame DICOM file?", "One file that holds several frames, such as an ultrasound "
     "cine loop or an enhanced CT or MR series.", "什么是多帧DICOM文件？",
     "一个文件包含多帧图像，例如超声动态序列或增强型CT、MR序列。"),
    ("data", "What is slice thickness?",
     "The thickness of tissue that one cross-sectional image represents, in "
     "millimetres.", "什么是层厚？", "一幅断层图像所代表的组织厚度，单位为毫米。"),
)

_WINDOW_QUESTIONS = {
    "lung": ("a lung window", "肺窗"), "mediastinum": ("a mediastinal window", "纵隔窗"),
    "brain": ("a brain window", "脑窗"), "bone": ("a bone window", "骨窗"),
    "liver": ("a liver window", "肝窗"),
    "abdomen": ("an abdominal soft-tissue window", "腹部软组织窗"),
    "subdural": ("a subdural window", "硬膜下窗"),
}


def window_facts() -> list[tuple[str, str, str, str, str]]:
    """One question per common CT window, answered from ``NAMED_WINDOWS`` (one source of the numbers)."""
    facts = []
    for name, (en, zh) in _WINDOW_QUESTIONS.items():
        center, width = NAMED_WINDOWS[name]
        facts.append(("ct-windows", f"What window width and level are typical for {en} on CT?",
                      f"Width about {width:g} HU and level about {center:g} HU.",
                      f"CT{zh}常用的窗宽和窗位是多少？", f"窗宽约{width:g} HU，窗位约{center:g} HU。"))
    return facts


def text_records() -> list[dict]:
    """Every fact as an en and a zh record (task ``text``; a human question and a gpt answer)."""
    records = []
    for n, (topic, q_en, a_en, q_zh, a_zh) in enumerate((*FACTS, *window_facts())):
        for lang, question, answer in (("en", q_en, a_en), ("zh", q_zh, a_zh)):
            records.append({
                "id": f"mini-text-{n:03d}-{lang}", "lang": lang, "source": "sunmed-vl-mini", "task": "text",
                "conversations": [{"from": "human", "value": open_prompt(question, lang)},
                                  {"from": "gpt", "value": answer}],
                "meta": {"topic": topic},
            })
    return records
