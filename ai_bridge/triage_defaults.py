"""The red flags a clinic starts with, in English and Chinese: installed by a migration, editable in the admin.

Kept as data the migration reads (and `triage_defaults_install` for a deployment that lost them): changing a
pattern here changes new installs only."""

# (pattern, is_regex, language, reason)
DEFAULT_RULES = [
    (r"\bchest (pain|tightness|pressure)\b|\bcrushing (pain|chest)\b|\bheart attack\b", True, "en", "chest pain"),
    (r"\b(can(no|')?t|cannot|unable to|struggling to|hard to) breathe?\b|\bshort(ness)? of breath\b"
     r"|\bchoking\b", True, "en", "difficulty breathing"),
    (r"\bsuicid(e|al)\b|\bkill(ing)? myself\b|\bend (my|it all)\b.*\blife\b|\bwant to die\b|\bself[- ]harm\b",
     True, "en", "suicide or self-harm"),
    (r"\b(face|mouth) (is )?droop(ing)?\b|\bslurred speech\b|\bstroke\b|\b(can(no|')?t|cannot) (move|feel) "
     r"(my )?(arm|leg|face)\b|\bsudden (numbness|weakness)\b", True, "en", "stroke signs"),
    (r"\b(severe|heavy|won'?t stop|uncontrolled|a lot of) bleeding\b|\bbleeding (heavily|a lot|badly)\b"
     r"|\bvomiting blood\b|\bcoughing (up )?blood\b", True, "en", "severe bleeding"),
    (r"\b(passed|passing) out\b|\bunconscious\b|\bfainted\b|\bseizure\b|\bconvuls", True, "en",
     "loss of consciousness or seizure"),
    (r"\b(anaphyla|throat (is )?(closing|swelling)|swollen (throat|tongue))", True, "en", "severe allergic reaction"),
    (r"\boverdose\b|\btook too many (pills|tablets)\b", True, "en", "overdose"),
    ("胸痛|胸口痛|胸闷|心口痛|心脏病发作", True, "zh", "胸痛"),
    ("呼吸困难|喘不过气|无法呼吸|不能呼吸|透不过气|窒息", True, "zh", "呼吸困难"),
    ("自杀|轻生|不想活|想死|自残|结束生命", True, "zh", "自杀或自伤"),
    ("中风|口角歪斜|说话不清|口齿不清|半身麻木|一侧无力|突然麻木", True, "zh", "中风征兆"),
    ("大出血|出血不止|血流不止|吐血|咳血|便血不止", True, "zh", "严重出血"),
    ("昏迷|晕倒|昏倒|失去意识|抽搐|癫痫发作", True, "zh", "意识丧失或抽搐"),
    ("过敏性休克|喉咙肿|喉头水肿", True, "zh", "严重过敏反应"),
    ("吃多了药|服药过量|过量服药", True, "zh", "药物过量"),
]
