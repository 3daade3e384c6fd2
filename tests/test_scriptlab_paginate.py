"""The paginator: 55-line pages, break rules, eighths measured on the laid-out page."""
from vibeboard.scriptlab import importers, paginate
from vibeboard.scriptlab.breakdown import build_breakdown


def _play(text):
    return importers.parse_script(text)


def test_long_action_fills_pages_of_55_lines():
    words = " ".join(["word"] * 11)  # 54 characters: one printed line each
    body = "\n".join([words] * 120)
    layout = paginate.paginate(_play(f"INT. ROOM - DAY\n\n{body}\n"))
    assert [len(p) for p in layout.pages] == [55, 55, 12]  # heading + blank + 120 lines


def test_a_heading_never_ends_a_page():
    filler = "\n".join(["Line."] * 52)  # heading + blank + 52 lines = 54: one line left
    text = f"INT. ROOM - DAY\n\n{filler}\n\nEXT. YARD - NIGHT\n\nDogs bark.\nThey bark again.\n"
    layout = paginate.paginate(_play(text))
    assert layout.pages[1][0][1] == "EXT. YARD - NIGHT"
    assert all(line != "EXT. YARD - NIGHT" for _, line in layout.pages[0])


def test_a_split_speech_carries_more_and_contd():
    filler = "\n".join(["Line."] * 46)
    speech = " ".join(["talk"] * 60)  # ~9 dialogue lines at 35 characters
    layout = paginate.paginate(_play(f"INT. ROOM - DAY\n\n{filler}\n\nBOB\n{speech}\n"))
    first, second = layout.pages[0], layout.pages[1]
    assert first[-1][1] == "(MORE)" and second[0][1] == "BOB (CONT'D)"
    assert len(first) == 55


def test_dialogue_wraps_at_35_and_action_at_60():
    assert max(len(x) for x in paginate.wrap("a " * 100, paginate.WIDTH["dialogue"])) <= 35
    assert max(len(x) for x in paginate.wrap("a " * 100, paginate.WIDTH["action"])) <= 60


def test_eighths_come_from_page_lines_not_characters():
    half = "\n".join(["Line."] * 25)  # heading + blank + 25 + blank before next scene ≈ 27.5 lines ≈ 4/8
    text = f"INT. A - DAY\n\n{half}\n\nINT. B - DAY\n\n{'x' * 200}\n"
    bd = build_breakdown(_play(text))
    assert bd.scenes[0].eighths == 4
    # 200 characters of action is 4 printed lines: still the 1/8 minimum, whatever its character count
    assert bd.scenes[1].eighths == 1


def test_format_eighths():
    assert [paginate.format_eighths(n) for n in (1, 8, 13, 16)] == ["1/8", "1", "1 5/8", "2"]
