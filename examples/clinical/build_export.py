"""Build examples/clinical/export.json, the demo project's Generative AI Lab JSON export.

It holds 40 short clinical notes, invented for labtrain (no corpus was copied; Apache-2.0
like the repository), annotated for `config.xml` in this folder:

- spans PROBLEM, TREATMENT, TEST, DATE (NER);
- assertion status as Generative AI Lab exports it: a second `labels` result, ABSENT or
  POSSIBLE, on exactly the offsets of a PROBLEM span;
- one `department` choice per note: respiratory, cardiology or musculoskeletal.

Annotators `maria` and `tom` (12 notes annotated by both, with small differences), reviewer
`rita` (`review_status` on 10 completions: 8 accepted, 2 rejected), task tags `batch-1`
(tasks 1-20) and `batch-2` (tasks 21-40).

Each note below is its text, its department and its spans as (phrase, label) or
(phrase, "PROBLEM", assertion). The script finds every phrase in the text itself and stops
with an error when a phrase is missing, occurs more than once, or does not sit on word
boundaries, so every `value.text` equals `data.text[start:end]`. Pure Python, standard library
only, deterministic (the same file on every run):

    python examples/clinical/build_export.py      # rewrites examples/clinical/export.json
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

OUT = Path(__file__).with_name("export.json")
NER_LABELS = {"PROBLEM", "TREATMENT", "TEST", "DATE"}
ASSERTIONS = {"ABSENT", "POSSIBLE"}
DEPARTMENTS = ("respiratory", "cardiology", "musculoskeletal")
ANNOTATORS = ("maria", "tom")
REVIEWER = "rita"
P, T, X, D = "PROBLEM", "TREATMENT", "TEST", "DATE"
NO, MAYBE = "ABSENT", "POSSIBLE"

# id: (department, text, spans). The department cycles respiratory, cardiology, musculoskeletal.
NOTES: dict[int, tuple[str, str, list[tuple]]] = {
    1: (
        "respiratory",
        "Seen on March 3 with a productive cough and low-grade fever for four days. Chest X-ray "
        "ordered and amoxicillin started. She denies chest pain.",
        [
            ("March 3", D),
            ("productive cough", P),
            ("low-grade fever", P),
            ("Chest X-ray", X),
            ("amoxicillin", T),
            ("chest pain", P, NO),
        ],
    ),
    2: (
        "cardiology",
        "Follow-up on 12 January for palpitations and intermittent dizziness, with no syncope. "
        "ECG shows sinus rhythm; Holter monitor arranged. Continue metoprolol.",
        [
            ("12 January", D),
            ("palpitations", P),
            ("intermittent dizziness", P),
            ("ECG", X),
            ("Holter monitor", X),
            ("syncope", P, NO),
            ("metoprolol", T),
        ],
    ),
    3: (
        "musculoskeletal",
        "Presented on 2 May after a fall onto the right wrist, with swelling and tenderness. "
        "Suspected scaphoid fracture; wrist X-ray requested and a thumb spica splint applied.",
        [
            ("2 May", D),
            ("swelling", P),
            ("tenderness", P),
            ("scaphoid fracture", P, MAYBE),
            ("wrist X-ray", X),
            ("thumb spica splint", T),
        ],
    ),
    4: (
        "respiratory",
        "Known asthma, worse since the weekend with wheeze and night-time cough but no fever. "
        "Peak flow 60% of best. Started prednisolone and increased salbutamol.",
        [
            ("asthma", P),
            ("wheeze", P),
            ("night-time cough", P),
            ("Peak flow", X),
            ("prednisolone", T),
            ("salbutamol", T),
            ("fever", P, NO),
        ],
    ),
    5: (
        "cardiology",
        "Admitted on 14/02 with crushing chest pain radiating to the left arm. Troponin raised and "
        "ECG shows ST elevation. Given aspirin and taken for angioplasty.",
        [
            ("14/02", D),
            ("crushing chest pain", P),
            ("Troponin", X),
            ("ECG", X),
            ("ST elevation", P),
            ("aspirin", T),
            ("angioplasty", T),
        ],
    ),
    6: (
        "musculoskeletal",
        "Chronic low back pain for six months, with no leg weakness and no bladder symptoms. MRI "
        "of the lumbar spine on 9 October was unremarkable. Referred for physiotherapy.",
        [
            ("Chronic low back pain", P),
            ("leg weakness", P, NO),
            ("bladder symptoms", P, NO),
            ("MRI of the lumbar spine", X),
            ("9 October", D),
            ("physiotherapy", T),
        ],
    ),
    7: (
        "respiratory",
        "Two weeks of breathlessness and green sputum. Possible pneumonia on the chest film from "
        "21 June; sputum culture sent and doxycycline started.",
        [
            ("breathlessness", P),
            ("green sputum", P),
            ("pneumonia", P, MAYBE),
            ("chest film", X),
            ("21 June", D),
            ("sputum culture", X),
            ("doxycycline", T),
        ],
    ),
    8: (
        "cardiology",
        "Reviewed on 5 April for ankle oedema and shortness of breath when lying flat; denies "
        "chest pain. Echocardiogram shows reduced ejection fraction. Furosemide dose increased.",
        [
            ("5 April", D),
            ("ankle oedema", P),
            ("shortness of breath", P),
            ("Echocardiogram", X),
            ("reduced ejection fraction", P),
            ("Furosemide", T),
            ("chest pain", P, NO),
        ],
    ),
    9: (
        "musculoskeletal",
        "Swollen, hot right knee since 30 August. Rule out septic arthritis; joint aspiration "
        "performed and fluid sent for culture. Possible gout given a raised urate.",
        [
            ("Swollen, hot right knee", P),
            ("30 August", D),
            ("septic arthritis", P, MAYBE),
            ("joint aspiration", X),
            ("culture", X),
            ("gout", P, MAYBE),
            ("urate", X),
        ],
    ),
    10: (
        "respiratory",
        "Smoker with chronic cough, seen on 18 November; no haemoptysis. Spirometry confirms "
        "COPD. Started tiotropium inhaler and offered smoking cessation support.",
        [
            ("chronic cough", P),
            ("18 November", D),
            ("Spirometry", X),
            ("COPD", P),
            ("tiotropium inhaler", T),
            ("smoking cessation support", T),
            ("haemoptysis", P, NO),
        ],
    ),
    11: (
        "cardiology",
        "Blood pressure 168/98 on three readings since 7 March, consistent with hypertension. No "
        "headache or visual change. Started amlodipine; renal function tests ordered.",
        [
            ("Blood pressure", X),
            ("7 March", D),
            ("hypertension", P),
            ("headache", P, NO),
            ("visual change", P, NO),
            ("amlodipine", T),
            ("renal function tests", X),
        ],
    ),
    12: (
        "musculoskeletal",
        "Right shoulder pain after lifting on 11 July, worse reaching overhead, with no "
        "numbness in the hand. Suspected rotator cuff tear; ultrasound booked. Given naproxen.",
        [
            ("Right shoulder pain", P),
            ("11 July", D),
            ("rotator cuff tear", P, MAYBE),
            ("ultrasound", X),
            ("naproxen", T),
            ("numbness", P, NO),
        ],
    ),
    13: (
        "respiratory",
        "Child with a barking cough at night since 3 December. Likely croup; no drooling and no "
        "high fever. Single dose of dexamethasone given.",
        [
            ("barking cough", P),
            ("3 December", D),
            ("croup", P, MAYBE),
            ("drooling", P, NO),
            ("high fever", P, NO),
            ("dexamethasone", T),
        ],
    ),
    14: (
        "cardiology",
        "Irregular pulse found at a routine visit on 22 September; no history of stroke. ECG "
        "confirms atrial fibrillation. Started apixaban and bisoprolol.",
        [
            ("Irregular pulse", P),
            ("22 September", D),
            ("ECG", X),
            ("atrial fibrillation", P),
            ("apixaban", T),
            ("bisoprolol", T),
            ("stroke", P, NO),
        ],
    ),
    15: (
        "musculoskeletal",
        "Ankle twisted playing football on 4 June, with bruising over the lateral side. Ankle "
        "X-ray shows no fracture. Likely sprain; advised rest, ice and elevation.",
        [
            ("4 June", D),
            ("bruising", P),
            ("Ankle X-ray", X),
            ("fracture", P, NO),
            ("sprain", P, MAYBE),
            ("rest, ice and elevation", T),
        ],
    ),
    16: (
        "respiratory",
        "Fever, pleuritic chest pain and rusty sputum since 1 February. Chest X-ray shows right "
        "lower lobe consolidation. Admitted for intravenous co-amoxiclav.",
        [
            ("Fever", P),
            ("pleuritic chest pain", P),
            ("rusty sputum", P),
            ("1 February", D),
            ("Chest X-ray", X),
            ("right lower lobe consolidation", P),
            ("intravenous co-amoxiclav", T),
        ],
    ),
    17: (
        "cardiology",
        "Chest tightness on climbing stairs for a month, relieved by rest. Rule out angina: "
        "exercise stress test booked for 16 May. Glyceryl trinitrate spray prescribed meanwhile.",
        [
            ("Chest tightness", P),
            ("angina", P, MAYBE),
            ("exercise stress test", X),
            ("16 May", D),
            ("Glyceryl trinitrate spray", T),
        ],
    ),
    18: (
        "musculoskeletal",
        "Morning stiffness and swelling of both hands since January. Rheumatoid factor and CRP "
        "requested. Possible rheumatoid arthritis; started on ibuprofen.",
        [
            ("Morning stiffness", P),
            ("swelling of both hands", P),
            ("January", D),
            ("Rheumatoid factor", X),
            ("CRP", X),
            ("rheumatoid arthritis", P, MAYBE),
            ("ibuprofen", T),
        ],
    ),
    19: (
        "respiratory",
        "Sore throat and hoarse voice for three days, no difficulty swallowing. Throat swab taken "
        "on 8 August. Advised fluids and paracetamol; antibiotics not needed.",
        [
            ("Sore throat", P),
            ("hoarse voice", P),
            ("difficulty swallowing", P, NO),
            ("Throat swab", X),
            ("8 August", D),
            ("paracetamol", T),
        ],
    ),
    20: (
        "cardiology",
        "Known heart failure, admitted on 27 October with a 4 kg weight gain and leg swelling "
        "but no chest pain at rest. BNP markedly raised. Treated with intravenous furosemide.",
        [
            ("heart failure", P),
            ("27 October", D),
            ("leg swelling", P),
            ("BNP", X),
            ("intravenous furosemide", T),
            ("chest pain", P, NO),
        ],
    ),
    21: (
        "musculoskeletal",
        "Hip pain after a fall at home on 13 March; the leg is shortened and externally rotated. "
        "Suspected neck of femur fracture. Hip X-ray ordered and morphine given for pain.",
        [("Hip pain", P), ("13 March", D), ("neck of femur fracture", P, MAYBE), ("Hip X-ray", X), ("morphine", T)],
    ),
    22: (
        "respiratory",
        "Recurrent chest infections since childhood with daily sputum, but no weight loss. CT "
        "chest on 19 April shows bronchiectasis. Started airway clearance physiotherapy; sputum "
        "sample sent.",
        [
            ("Recurrent chest infections", P),
            ("daily sputum", P),
            ("CT chest", X),
            ("19 April", D),
            ("bronchiectasis", P),
            ("airway clearance physiotherapy", T),
            ("sputum sample", X),
            ("weight loss", P, NO),
        ],
    ),
    23: (
        "cardiology",
        "Fainted while standing in church on 6 January, with full recovery in a minute and no "
        "chest pain or palpitations. ECG and lying and standing blood pressure are normal. "
        "Possible vasovagal syncope.",
        [
            ("Fainted", P),
            ("6 January", D),
            ("chest pain", P, NO),
            ("palpitations", P, NO),
            ("ECG", X),
            ("lying and standing blood pressure", X),
            ("vasovagal syncope", P, MAYBE),
        ],
    ),
    24: (
        "musculoskeletal",
        "Pain in the heel first thing in the morning for two months. Examination suggests plantar "
        "fasciitis; no swelling. Advised stretching exercises and supportive insoles.",
        [
            ("Pain in the heel", P),
            ("plantar fasciitis", P, MAYBE),
            ("swelling", P, NO),
            ("stretching exercises", T),
            ("supportive insoles", T),
        ],
    ),
    25: (
        "respiratory",
        "Seen on 10 September with a dry cough since starting lisinopril. Chest clear with no "
        "wheeze, and oxygen saturation 98%. Cough likely due to the ACE inhibitor; switched to losartan.",
        [
            ("10 September", D),
            ("dry cough", P),
            ("lisinopril", T),
            ("wheeze", P, NO),
            ("oxygen saturation", X),
            ("losartan", T),
        ],
    ),
    26: (
        "cardiology",
        "Breathless and tired since 2 July, with a new murmur on examination and no angina. "
        "Echocardiogram shows severe aortic stenosis. Referred for valve replacement.",
        [
            ("Breathless", P),
            ("2 July", D),
            ("murmur", P),
            ("Echocardiogram", X),
            ("severe aortic stenosis", P),
            ("valve replacement", T),
            ("angina", P, NO),
        ],
    ),
    27: (
        "musculoskeletal",
        "Neck pain and stiffness after a car accident on 25 November. No arm weakness or tingling. "
        "Cervical spine X-ray normal; whiplash injury treated with simple analgesia.",
        [
            ("Neck pain", P),
            ("25 November", D),
            ("arm weakness", P, NO),
            ("tingling", P, NO),
            ("Cervical spine X-ray", X),
            ("whiplash injury", P),
            ("simple analgesia", T),
        ],
    ),
    28: (
        "respiratory",
        "Night sweats, weight loss and a cough for six weeks. Possible tuberculosis; chest X-ray "
        "and three sputum samples requested on 15 March. Patient isolated pending results.",
        [
            ("Night sweats", P),
            ("weight loss", P),
            ("cough", P),
            ("tuberculosis", P, MAYBE),
            ("chest X-ray", X),
            ("sputum samples", X),
            ("15 March", D),
        ],
    ),
    29: (
        "cardiology",
        "Swelling of the left calf since 20 February after knee surgery; no breathlessness. "
        "Suspected deep vein thrombosis; Doppler ultrasound requested. Started rivaroxaban.",
        [
            ("Swelling of the left calf", P),
            ("20 February", D),
            ("knee surgery", T),
            ("deep vein thrombosis", P, MAYBE),
            ("Doppler ultrasound", X),
            ("rivaroxaban", T),
            ("breathlessness", P, NO),
        ],
    ),
    30: (
        "musculoskeletal",
        "Long-standing knee pain on walking, worse on stairs. X-ray on 3 October shows "
        "osteoarthritis with joint space narrowing. Started paracetamol and physiotherapy; no locking.",
        [
            ("knee pain", P),
            ("X-ray", X),
            ("3 October", D),
            ("osteoarthritis", P),
            ("joint space narrowing", P),
            ("paracetamol", T),
            ("physiotherapy", T),
            ("locking", P, NO),
        ],
    ),
    31: (
        "respiratory",
        "Sudden sharp chest pain and breathlessness in a tall young man on 9 May. Chest X-ray "
        "confirms a left pneumothorax. Needle aspiration performed with good re-expansion.",
        [
            ("sharp chest pain", P),
            ("breathlessness", P),
            ("9 May", D),
            ("Chest X-ray", X),
            ("left pneumothorax", P),
            ("Needle aspiration", T),
        ],
    ),
    32: (
        "cardiology",
        "Routine check on 28 January found high cholesterol on a fasting lipid profile. No history "
        "of angina or stroke. Started atorvastatin, with bloods repeated in three months.",
        [
            ("28 January", D),
            ("high cholesterol", P),
            ("fasting lipid profile", X),
            ("angina", P, NO),
            ("stroke", P, NO),
            ("atorvastatin", T),
        ],
    ),
    33: (
        "musculoskeletal",
        "Lower back pain radiating down the left leg since 17 August, without saddle numbness. "
        "Possible sciatica from a disc prolapse; straight leg raise positive. MRI requested.",
        [
            ("Lower back pain", P),
            ("17 August", D),
            ("sciatica", P, MAYBE),
            ("disc prolapse", P, MAYBE),
            ("straight leg raise", X),
            ("saddle numbness", P, NO),
            ("MRI", X),
        ],
    ),
    34: (
        "respiratory",
        "Allergic rhinitis with sneezing and a blocked nose every spring. Skin prick test on "
        "2 April positive for grass pollen. Started a steroid nasal spray and cetirizine.",
        [
            ("Allergic rhinitis", P),
            ("sneezing", P),
            ("blocked nose", P),
            ("Skin prick test", X),
            ("2 April", D),
            ("steroid nasal spray", T),
            ("cetirizine", T),
        ],
    ),
    35: (
        "cardiology",
        "Palpitations since 11 December with a heart rate of 150, no chest pain or fainting. "
        "ECG shows supraventricular tachycardia. Converted with adenosine.",
        [
            ("Palpitations", P),
            ("11 December", D),
            ("heart rate", X),
            ("ECG", X),
            ("supraventricular tachycardia", P),
            ("adenosine", T),
            ("chest pain", P, NO),
            ("fainting", P, NO),
        ],
    ),
    36: (
        "musculoskeletal",
        "Elderly woman with sudden mid-back pain after coughing, seen on 14 June. Suspected "
        "osteoporotic vertebral fracture; spine X-ray and bone density scan ordered. Started "
        "alendronic acid.",
        [
            ("mid-back pain", P),
            ("14 June", D),
            ("osteoporotic vertebral fracture", P, MAYBE),
            ("spine X-ray", X),
            ("bone density scan", X),
            ("alendronic acid", T),
        ],
    ),
    37: (
        "respiratory",
        "Daytime sleepiness and loud snoring reported by his partner. Possible obstructive sleep "
        "apnoea; overnight oximetry arranged for 23 July. No morning headaches.",
        [
            ("Daytime sleepiness", P),
            ("loud snoring", P),
            ("obstructive sleep apnoea", P, MAYBE),
            ("overnight oximetry", X),
            ("23 July", D),
            ("morning headaches", P, NO),
        ],
    ),
    38: (
        "cardiology",
        "Sharp chest pain since 5 March, eased by sitting forward, after a viral illness. Possible "
        "pericarditis; ECG and echocardiogram requested. Started ibuprofen and colchicine.",
        [
            ("Sharp chest pain", P),
            ("5 March", D),
            ("viral illness", P),
            ("pericarditis", P, MAYBE),
            ("ECG", X),
            ("echocardiogram", X),
            ("ibuprofen", T),
            ("colchicine", T),
        ],
    ),
    39: (
        "musculoskeletal",
        "Tennis elbow with pain over the outer elbow for eight weeks, seen on 19 January. No trauma "
        "and no swelling. Treated with a steroid injection and a forearm brace.",
        [
            ("Tennis elbow", P),
            ("pain over the outer elbow", P),
            ("19 January", D),
            ("trauma", P, NO),
            ("swelling", P, NO),
            ("steroid injection", T),
            ("forearm brace", T),
        ],
    ),
    40: (
        "respiratory",
        "Asthma review on 30 April: well controlled, no night waking and no wheeze. Inhaler "
        "technique checked and peak flow normal. Continue budesonide inhaler.",
        [
            ("Asthma", P),
            ("30 April", D),
            ("night waking", P, NO),
            ("wheeze", P, NO),
            ("peak flow", X),
            ("budesonide inhaler", T),
        ],
    ),
}

# Notes annotated by both: the second annotator's completion differs from the first one's by
# `drop` (results left out: (phrase, label); leaving out a PROBLEM also leaves out its
# assertion), `add` (extra spans) and `choice` (another department). `later`: the second
# completion was submitted a day after the first (else two hours before it).
SECOND: dict[int, dict] = {
    2: {"drop": [("Holter monitor", X)], "later": True},
    5: {"drop": [("ST elevation", P)], "later": False},
    7: {"drop": [("pneumonia", MAYBE)], "later": True},
    9: {"drop": [("joint aspiration", X)], "add": [("joint aspiration", T)], "later": False},
    12: {"drop": [("numbness", P)], "later": True},
    16: {"drop": [("right lower lobe consolidation", P)], "add": [("consolidation", P)], "later": False},
    19: {"add": [("fluids", T)], "later": True},
    27: {"drop": [("tingling", NO)], "later": False},
    29: {"choice": "musculoskeletal", "later": True},
    30: {"drop": [("joint space narrowing", P)], "later": False},
    33: {"drop": [("disc prolapse", MAYBE)], "later": True},
    38: {"drop": [("viral illness", P)], "later": False},
}

# rita's reviews: (task, "first" | "second") -> approved. The two rejections fall on the second
# annotator's weaker completion of a doubly annotated note (a test labelled as a treatment; the
# wrong department).
REVIEWS: dict[tuple[int, str], bool] = {
    (1, "first"): True,
    (2, "first"): True,
    (9, "second"): False,
    (10, "first"): True,
    (16, "first"): True,
    (20, "first"): True,
    (25, "first"): True,
    (29, "second"): False,
    (30, "first"): True,
    (35, "first"): True,
}


def fail(message: str) -> None:
    sys.exit(f"build_export.py: {message}")


def locate(task: int, text: str, phrase: str) -> tuple[int, int]:
    """The offsets of `phrase` in `text`: it must occur exactly once, on word boundaries."""
    found = [m.start() for m in re.finditer(re.escape(phrase), text)]
    if not found:
        fail(f"task {task}: phrase {phrase!r} is not in the text")
    if len(found) > 1:
        fail(f"task {task}: phrase {phrase!r} occurs {len(found)} times in the text; make it unique")
    start, end = found[0], found[0] + len(phrase)
    if (start > 0 and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
        fail(f"task {task}: phrase {phrase!r} sits inside a longer word")
    return start, end


def result_id(*parts: object) -> str:
    """A 10-character id like Generative AI Lab's, from a hash (the same on every run)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return "".join(alphabet[b % 64] for b in digest[:10])


def spans_of(task: int, text: str, specs: list[tuple]) -> list[tuple[int, int, str]]:
    """(start, end, label) per result: a PROBLEM with an assertion gives two on the same offsets."""
    out = []
    for spec in specs:
        phrase, label, *assertion = spec
        bad_assertion = len(assertion) > 1 or (assertion and (label != P or assertion[0] not in ASSERTIONS))
        if label not in NER_LABELS or bad_assertion:
            fail(f"task {task}: bad span {spec!r}")
        start, end = locate(task, text, phrase)
        out.append((start, end, label))
        if assertion:
            out.append((start, end, assertion[0]))
    return out


def check_overlaps(task: int, spans: list[tuple[int, int, str]]) -> None:
    ner = sorted((s, e) for s, e, lab in spans if lab in NER_LABELS)
    for (s1, e1), (s2, e2) in zip(ner, ner[1:]):
        if s2 < e1:
            fail(f"task {task}: spans {s1}-{e1} and {s2}-{e2} overlap")
    problems = {(s, e) for s, e, lab in spans if lab == P}
    for s, e, lab in spans:
        if lab in ASSERTIONS and (s, e) not in problems:
            fail(f"task {task}: assertion {lab} at {s}-{e} is on no PROBLEM span")


def completion_spans(task: int, text: str, specs: list[tuple], second: dict | None) -> list[tuple[int, int, str]]:
    spans = spans_of(task, text, specs)
    if second is None:
        return spans
    for phrase, label in second.get("drop", []):
        start, end = locate(task, text, phrase)
        gone = {(start, end, label)} | ({(start, end, a) for a in ASSERTIONS} if label == P else set())
        if (start, end, label) not in spans:
            fail(f"task {task}: the second completion drops {phrase!r} {label}, which the first does not have")
        spans = [s for s in spans if s not in gone]
    spans += spans_of(task, text, second.get("add", []))
    return spans


def iso(moment: datetime, zone: bool = True) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}" + ("Z" if zone else "")


def completion(
    task: int, n: int, author: str, text: str, spans, choice: str, submitted: datetime, review: bool | None
) -> dict:
    results = []
    order = {lab: i for i, lab in enumerate([P, T, X, D, NO, MAYBE])}
    for start, end, label in sorted(spans, key=lambda s: (s[0], s[1], order[s[2]])):
        results.append(
            {
                "value": {"start": start, "end": end, "text": text[start:end], "labels": [label], "confidence": 1},
                "id": result_id(task, author, start, end, label),
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
            }
        )
    results.append(
        {
            "value": {"choices": [choice]},
            "id": result_id(task, author, "department", choice),
            "from_name": "department",
            "to_name": "text",
            "type": "choices",
        }
    )
    lead_time = 40 + (len(text) + 17 * task + 29 * n) % 140
    record = {
        "created_username": author,
        "created_ago": iso(submitted - timedelta(seconds=lead_time, milliseconds=350)),
        "lead_time": lead_time,
        "result": results,
        "honeypot": False,
        "id": task * 100 + n,
        "submitted_at": iso(submitted, zone=False),
        "updated_at": iso(submitted + timedelta(milliseconds=240)),
        "updated_by": author,
    }
    if review is not None:
        reviewed = datetime(2025, 3, 12 if task <= 20 else 26, 14, 0) + timedelta(minutes=7 * task)
        record["review_status"] = {"approved": review, "reviewer": REVIEWER, "reviewed_at": iso(reviewed)}
    return record


def build() -> list[dict]:
    tasks = []
    result_ids: set[str] = set()
    for task, (department, text, specs) in sorted(NOTES.items()):
        if department != DEPARTMENTS[(task - 1) % 3] or not 120 <= len(text) <= 300 or not text.isascii():
            fail(f"task {task}: department, length ({len(text)}) or characters are off")
        first_author = ANNOTATORS[(task - 1) % 2]  # maria on odd tasks, tom on even ones
        first_at = datetime(2025, 3, 4 if task <= 20 else 18, 9, 0) + timedelta(
            days=(task - 1) % 5, minutes=(37 * task) % 480, seconds=(29 * task) % 60, milliseconds=(137 * task) % 1000
        )
        made = [("first", first_author, completion_spans(task, text, specs, None), department, first_at)]
        second = SECOND.get(task)
        if second is not None:
            other = ANNOTATORS[task % 2]
            at = first_at + (timedelta(days=1, minutes=13) if second["later"] else -timedelta(hours=2, minutes=9))
            made.append(
                ("second", other, completion_spans(task, text, specs, second), second.get("choice", department), at)
            )
        made.sort(key=lambda m: m[4])
        completions = []
        for n, (which, author, spans, choice, at) in enumerate(made, start=1):
            check_overlaps(task, spans)
            completions.append(completion(task, n, author, text, spans, choice, at, REVIEWS.get((task, which))))
        for c in completions:
            for r in c["result"]:
                if r["id"] in result_ids:
                    fail(f"task {task}: result id {r['id']} repeats")
                result_ids.add(r["id"])
        created = datetime(2025, 3, 3 if task <= 20 else 17, 8, 30) + timedelta(seconds=task)
        tasks.append(
            {
                "id": task,
                "data": {"text": text, "title": f"Note {task}"},
                "completions": completions,
                "predictions": [],
                "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
                "created_by": REVIEWER,
                "tags": ["batch-1" if task <= 20 else "batch-2"],
            }
        )
    for task, which in REVIEWS:
        if which == "second" and task not in SECOND:
            fail(f"review of task {task}'s second completion, which it does not have")
    return tasks


def main() -> None:
    tasks = build()
    OUT.write_text(json.dumps(tasks, indent=2) + "\n", encoding="utf-8")
    n_completions = sum(len(t["completions"]) for t in tasks)
    print(f"wrote {OUT} ({len(tasks)} tasks, {n_completions} completions)")


if __name__ == "__main__":
    main()
