"""General (non-medical) text for SunMed-VL-mini: what shows whether medical training kept the LLM's
general skills, and the prompts whose answers the base model gives for replay.

- ``KNOWLEDGE``: everyday-knowledge questions with four options, in English and Chinese, written in
  MMLU's and CMMLU's published layouts (``general-text/mmlu``, ``general-text/cmmlu``) so that they are
  read by the same converters as the real sets and scored by likelihood (``eval --scoring likelihood``).
- ``OPEN_PROMPTS``: requests that call for a sentence or more; a model that answers them with a bare
  yes / no, or nothing, has lost its conversational skill (``open_ended``).
- ``REPLAY_PROMPTS``: other general requests, never scored: the base model's own answers to them
  (``replay_records``) are mixed into instruction tuning, a self-distilled stand-in for the general
  instruction data that the reference recipe mixes in (no such set ships on this machine).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from doctorsun.data.records import detect_lang

# (subject, English question, options, Chinese question, options, index of the answer)
KNOWLEDGE: tuple[tuple[str, str, tuple[str, ...], str, tuple[str, ...], int], ...] = (
    ("geography", "What is the capital of France?", ("Berlin", "Madrid", "Paris", "Rome"),
     "法国的首都是哪里？", ("柏林", "马德里", "巴黎", "罗马"), 2),
    ("geography", "What is the capital of Japan?", ("Seoul", "Tokyo", "Beijing", "Bangkok"),
     "日本的首都是哪里？", ("首尔", "东京", "北京", "曼谷"), 1),
    ("geography", "Which is the largest ocean on Earth?", ("Atlantic Ocean", "Indian Ocean", "Arctic Ocean",
                                                           "Pacific Ocean"),
     "地球上最大的海洋是哪个？", ("大西洋", "印度洋", "北冰洋", "太平洋"), 3),
    ("geography", "On which continent is Egypt?", ("Africa", "Europe", "South America", "Australia"),
     "埃及位于哪个大洲？", ("非洲", "欧洲", "南美洲", "大洋洲"), 0),
    ("geography", "What is the capital of China?", ("Shanghai", "Beijing", "Guangzhou", "Hong Kong"),
     "中国的首都是哪里？", ("上海", "北京", "广州", "香港"), 1),
    ("geography", "Which country has the largest population in South America?", ("Chile", "Peru", "Brazil",
                                                                                  "Uruguay"),
     "南美洲人口最多的国家是哪个？", ("智利", "秘鲁", "巴西", "乌拉圭"), 2),
    ("geography", "What is the longest river in Africa?", ("Nile", "Thames", "Danube", "Seine"),
     "非洲最长的河流是哪条？", ("尼罗河", "泰晤士河", "多瑙河", "塞纳河"), 0),
    ("geography", "Mount Everest lies in which mountain range?", ("Alps", "Andes", "Rockies", "Himalayas"),
     "珠穆朗玛峰位于哪座山脉？", ("阿尔卑斯山脉", "安第斯山脉", "落基山脉", "喜马拉雅山脉"), 3),
    ("science", "What do plants take in from the air to make food?", ("Oxygen", "Carbon dioxide", "Helium",
                                                                     "Neon"),
     "植物从空气中吸收什么来制造养分？", ("氧气", "二氧化碳", "氦气", "氖气"), 1),
    ("science", "Which planet is known as the Red Planet?", ("Venus", "Jupiter", "Mars", "Saturn"),
     "哪颗行星被称为红色星球？", ("金星", "木星", "火星", "土星"), 2),
    ("science", "At sea level, water boils at what temperature?", ("100 degrees Celsius", "50 degrees Celsius",
                                                                  "0 degrees Celsius", "200 degrees Celsius"),
     "在海平面，水的沸点是多少？", ("100摄氏度", "50摄氏度", "0摄氏度", "200摄氏度"), 0),
    ("science", "What is the chemical formula of water?", ("CO2", "NaCl", "O2", "H2O"),
     "水的化学式是什么？", ("CO2", "NaCl", "O2", "H2O"), 3),
    ("science", "Which star is at the centre of our solar system?", ("The Moon", "The Sun", "Sirius",
                                                                    "Polaris"),
     "太阳系的中心是哪颗恒星？", ("月球", "太阳", "天狼星", "北极星"), 1),
    ("science", "What force pulls objects toward the Earth?", ("Magnetism", "Friction", "Gravity",
                                                              "Electricity"),
     "什么力把物体拉向地球？", ("磁力", "摩擦力", "重力", "电力"), 2),
    ("science", "Which gas do humans need to breathe to live?", ("Oxygen", "Carbon monoxide", "Argon",
                                                                "Hydrogen"),
     "人类呼吸生存需要哪种气体？", ("氧气", "一氧化碳", "氩气", "氢气"), 0),
    ("science", "What is frozen water called?", ("Steam", "Ice", "Fog", "Rain"),
     "结冰的水叫什么？", ("水蒸气", "冰", "雾", "雨"), 1),
    ("science", "Which planet is the largest in the solar system?", ("Mercury", "Earth", "Mars", "Jupiter"),
     "太阳系中最大的行星是哪颗？", ("水星", "地球", "火星", "木星"), 3),
    ("science", "How many legs does an insect have?", ("Four", "Six", "Eight", "Ten"),
     "昆虫有几条腿？", ("四条", "六条", "八条", "十条"), 1),
    ("nature", "Which animal is the largest mammal?", ("Elephant", "Giraffe", "Blue whale", "Horse"),
     "最大的哺乳动物是哪种？", ("大象", "长颈鹿", "蓝鲸", "马"), 2),
    ("nature", "What do bees make?", ("Honey", "Milk", "Silk", "Wool"),
     "蜜蜂酿造什么？", ("蜂蜜", "牛奶", "丝绸", "羊毛"), 0),
    ("nature", "Which animal is known for its black and white stripes?", ("Lion", "Zebra", "Bear", "Camel"),
     "哪种动物以黑白条纹著称？", ("狮子", "斑马", "熊", "骆驼"), 1),
    ("nature", "Which bird cannot fly?", ("Eagle", "Sparrow", "Pigeon", "Penguin"),
     "哪种鸟不会飞？", ("老鹰", "麻雀", "鸽子", "企鹅"), 3),
    ("nature", "What do caterpillars turn into?", ("Spiders", "Butterflies", "Frogs", "Snails"),
     "毛毛虫会变成什么？", ("蜘蛛", "蝴蝶", "青蛙", "蜗牛"), 1),
    ("nature", "Which season comes after winter?", ("Autumn", "Summer", "Spring", "Winter again"),
     "冬天之后是哪个季节？", ("秋天", "夏天", "春天", "还是冬天"), 2),
    ("mathematics", "What is 7 times 8?", ("54", "56", "64", "48"),
     "7乘以8等于多少？", ("54", "56", "64", "48"), 1),
    ("mathematics", "How many sides does a triangle have?", ("Three", "Four", "Five", "Six"),
     "三角形有几条边？", ("三条", "四条", "五条", "六条"), 0),
    ("mathematics", "What is 100 divided by 4?", ("20", "40", "30", "25"),
     "100除以4等于多少？", ("20", "40", "30", "25"), 3),
    ("mathematics", "How many minutes are in an hour?", ("30", "100", "60", "24"),
     "一小时有多少分钟？", ("30", "100", "60", "24"), 2),
    ("mathematics", "What is 15 plus 27?", ("42", "32", "52", "41"),
     "15加27等于多少？", ("42", "32", "52", "41"), 0),
    ("mathematics", "How many days are in a week?", ("Five", "Seven", "Ten", "Twelve"),
     "一个星期有几天？", ("五天", "七天", "十天", "十二天"), 1),
    ("mathematics", "What is the square root of 81?", ("7", "8", "10", "9"),
     "81的平方根是多少？", ("7", "8", "10", "9"), 3),
    ("mathematics", "How many months are in a year?", ("Ten", "Eleven", "Twelve", "Thirteen"),
     "一年有几个月？", ("十个", "十一个", "十二个", "十三个"), 2),
    ("everyday", "Which instrument has black and white keys?", ("Piano", "Violin", "Drum", "Flute"),
     "哪种乐器有黑白琴键？", ("钢琴", "小提琴", "鼓", "长笛"), 0),
    ("everyday", "What colour do you get by mixing blue and yellow?", ("Purple", "Orange", "Green", "Red"),
     "蓝色和黄色混合得到什么颜色？", ("紫色", "橙色", "绿色", "红色"), 2),
    ("everyday", "Which meal is eaten in the morning?", ("Dinner", "Breakfast", "Supper", "Lunch"),
     "早上吃的是哪一餐？", ("晚餐", "早餐", "夜宵", "午餐"), 1),
    ("everyday", "What do people use an umbrella for?", ("Cooking", "Writing", "Sleeping",
                                                        "Staying dry in the rain"),
     "人们用雨伞做什么？", ("做饭", "写字", "睡觉", "下雨时遮雨"), 3),
    ("everyday", "Which device is used to tell the time?", ("Clock", "Spoon", "Chair", "Pillow"),
     "哪种物品用来看时间？", ("时钟", "勺子", "椅子", "枕头"), 0),
    ("everyday", "What is the opposite of hot?", ("Warm", "Cold", "Bright", "Loud"),
     "热的反义词是什么？", ("温", "冷", "亮", "响"), 1),
    ("history", "Who was the first person to walk on the Moon?", ("Yuri Gagarin", "Neil Armstrong",
                                                                  "Albert Einstein", "Isaac Newton"),
     "第一个登上月球的人是谁？", ("加加林", "阿姆斯特朗", "爱因斯坦", "牛顿"), 1),
    ("history", "Which ancient wonder was built in Egypt?", ("The Great Wall", "The Colosseum",
                                                            "The Great Pyramid of Giza", "Stonehenge"),
     "哪座古代奇迹建在埃及？", ("长城", "罗马斗兽场", "吉萨大金字塔", "巨石阵"), 2),
    ("history", "Who wrote Romeo and Juliet?", ("William Shakespeare", "Charles Dickens", "Mark Twain",
                                               "Leo Tolstoy"),
     "《罗密欧与朱丽叶》的作者是谁？", ("莎士比亚", "狄更斯", "马克·吐温", "托尔斯泰"), 0),
    ("history", "Which country built the Great Wall?", ("Japan", "India", "Mongolia", "China"),
     "长城是哪个国家修建的？", ("日本", "印度", "蒙古", "中国"), 3),
    ("language", "What is the plural of 'child'?", ("Childs", "Children", "Childes", "Childrens"),
     "英语单词 child 的复数是什么？", ("childs", "children", "childes", "childrens"), 1),
    ("language", "Which word is a colour?", ("Table", "Run", "Blue", "Quickly"),
     "下列哪个词表示颜色？", ("桌子", "跑", "蓝", "快地"), 2),
    ("language", "How many letters are in the English alphabet?", ("26", "24", "28", "30"),
     "英语字母表有多少个字母？", ("26个", "24个", "28个", "30个"), 0),
    ("language", "Which language is mainly spoken in Brazil?", ("Spanish", "French", "English", "Portuguese"),
     "巴西主要讲哪种语言？", ("西班牙语", "法语", "英语", "葡萄牙语"), 3),
    ("health", "How many hours of sleep do most adults need each night?", ("2 to 3 hours", "7 to 9 hours",
                                                                           "12 to 14 hours", "16 to 18 hours"),
     "大多数成年人每晚需要睡多少小时？", ("2到3小时", "7到9小时", "12到14小时", "16到18小时"), 1),
    ("health", "Which food is a good source of vitamin C?", ("Orange", "Butter", "Sugar", "Salt"),
     "哪种食物富含维生素C？", ("橙子", "黄油", "糖", "盐"), 0),
)

OPEN_PROMPTS: dict[str, tuple[str, ...]] = {
    "en": ("What are common symptoms of pneumonia?", "Give me three tips for sleeping better.",
           "Explain why the sky is blue.", "Describe a healthy breakfast.",
           "How do I make a cup of tea?", "Write one sentence about the ocean.",
           "Why is regular exercise good for you?", "What should I pack for a day at the beach?"),
    "zh": ("肺炎的常见症状有哪些？", "请给我三条改善睡眠的建议。", "为什么天空是蓝色的？", "请描述一份健康的早餐。",
           "怎样泡一杯茶？", "请写一句关于大海的话。", "为什么经常锻炼对身体有好处？", "去海边玩一天应该带些什么？"),
}

REPLAY_PROMPTS: dict[str, tuple[str, ...]] = {
    "en": ("What is your favourite season and why?", "Explain what a rainbow is.",
           "Give two reasons to drink water.", "How does a bicycle work?", "What is a healthy lunch?",
           "Describe a cat in two sentences.", "What can I do on a rainy day?", "Why do leaves fall in autumn?",
           "How should I prepare for a job interview?", "What is the difference between a city and a village?",
           "Tell me something about the Moon.", "How can I learn a new language?",
           "What are the benefits of reading books?", "Describe the colour green to a child.",
           "How do you wash your hands properly?", "What is a good way to save money?",
           "Why do people keep dogs?", "What happens when ice melts?", "Suggest a name for a small cafe.",
           "How can I stay calm before an exam?", "What is the weather like in summer?",
           "Explain what a computer does.", "What are vegetables good for?", "How do birds build nests?"),
    "zh": ("你最喜欢哪个季节？为什么？", "请解释什么是彩虹。", "请给出两个多喝水的理由。", "自行车是怎么工作的？",
           "什么样的午餐是健康的？", "用两句话描述一只猫。", "下雨天可以做些什么？", "秋天树叶为什么会落下？",
           "怎样准备一次求职面试？", "城市和乡村有什么不同？", "请讲一讲关于月亮的知识。", "怎样学习一门新语言？",
           "读书有什么好处？", "请向小朋友描述绿色。", "怎样正确地洗手？", "有什么好的省钱方法？",
           "人们为什么养狗？", "冰融化时会发生什么？", "给一家小咖啡馆起个名字。", "考试前怎样保持冷静？",
           "夏天的天气是什么样的？", "请解释电脑的作用。", "蔬菜对身体有什么好处？", "鸟是怎样筑巢的？"),
}

_YES_NO = re.compile(r"^\W*(yes|no|是|否|对|不|不是)\W*$", re.I)


def open_ended(answer: str, lang: str | None = None) -> bool:
    """Whether ``answer`` is an answer to an open request: not empty, not a bare yes / no, and at least
    four words (English) or eight characters (Chinese)."""
    text = answer.strip()
    if not text or _YES_NO.match(text):
        return False
    lang = lang or detect_lang(text)
    if lang == "zh":
        return len(re.sub(r"\s", "", text)) >= 8
    return len(text.split()) >= 4


def write_knowledge(root: Path) -> dict[str, Path]:
    """``KNOWLEDGE`` in MMLU's release layout (``mmlu/data/test/{subject}_test.csv``, no header) and
    CMMLU's (``cmmlu/test/{subject}.csv``); returns the two roots for ``eval --bench mmlu|cmmlu``."""
    mmlu, cmmlu = root / "mmlu", root / "cmmlu"
    by_subject: dict[str, list[tuple]] = {}
    for item in KNOWLEDGE:
        by_subject.setdefault(item[0], []).append(item)
    for subject, items in by_subject.items():
        en = mmlu / "data" / "test" / f"{subject}_test.csv"
        zh = cmmlu / "test" / f"{subject}.csv"
        for path in (en, zh):
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(en, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([q, *opts, "ABCD"[a]] for _, q, opts, _, _, a in items)
        with open(zh, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
            writer.writerows([i, q, *opts, "ABCD"[a]] for i, (_, _, _, q, opts, a) in enumerate(items))
    return {"mmlu": mmlu, "cmmlu": cmmlu}


_SENTENCE_END = re.compile(r"[。！？]|[.!?](?=\s|$)")


def whole_sentences(text: str) -> str:
    """``text`` up to its last sentence end (an answer cut by the length limit ends mid-sentence; a
    replay target should not teach that); unchanged when it holds no sentence end."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text.strip())]
    return text.strip()[:ends[-1]] if ends else text.strip()


def replay_records(answers: dict[str, list[str]]) -> list[dict]:
    """``task: text`` records of the base model's answers to ``REPLAY_PROMPTS`` (``answers[lang][i]``
    answers ``REPLAY_PROMPTS[lang][i]``); an answer that is not open-ended, or holds text that did not
    decode, is left out."""
    records = []
    for lang, prompts in REPLAY_PROMPTS.items():
        for i, (prompt, reply) in enumerate(zip(prompts, answers[lang], strict=True)):
            reply = whole_sentences(reply)
            if open_ended(reply, lang) and "\ufffd" not in reply:
                records.append({"id": f"mini-general-text-{i:03d}-{lang}", "lang": lang, "source": "sunmed-vl-mini",
                                "task": "text", "conversations": [{"from": "human", "value": prompt},
                                                                  {"from": "gpt", "value": reply.strip()}],
                                "meta": {"domain": "general", "origin": "base-model replay"}})
    return records
