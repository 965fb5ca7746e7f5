"""`appliancectl bench conversations`: the caller file format (a broken file names its file and
key), the scripted caller's choices and the verdict, without a call; then one scripted caller
through the real appliance."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from appliance.bench import script
from appliance.bench.script import ScriptedCaller, ScriptError, load_script, resolve_date
from appliance.bench.verdict import CallFacts, check, loops

MONDAY = dt.date(2026, 12, 7)

BOOK = """
goal = "book"
opening = ["I'd like to book.", "Can I book an appointment?"]
[[reply]]
when = ["shall i book", "11:00"]
say = "Yes."
[[reply]]
when = "shall i book"
in = ["start"]
say = ["No, make it eleven."]
then = "corrected"
[[reply]]
when = "shall i book"
say = ["No."]
[[reply]]
when = "name"
unless = "spell"
say = ["Lisa Jones.", "L-I-S-A Jones.", "My name is Lisa Jones."]
[[reply]]
when = "what time"
in = ["corrected"]
say = ["Eleven."]
[[reply]]
when = "what time"
say = ["Ten."]
[expect]
booked = {name = "Lisa Jones", date = "next tuesday", time = "11:00"}
outcome = "completed"
"""


def write(tmp_path: Path, text: str, name: str = "caller.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_caller_file_loads_with_its_defaults(tmp_path):
    s = load_script(write(tmp_path, BOOK, "book-lisa.toml"))
    assert (s.name, s.goal, s.opening[0], len(s.rules)) == ("book-lisa", "book", "I'd like to book.", 6)
    assert s.expect.transfer is False  # a booking handed to a person is no success
    assert s.expect.booked.date == "next tuesday" and s.expect.outcome == ("completed",)
    assert s.voice in script.VOICES.values()  # picked from the caller's name, the same every run


@pytest.mark.parametrize("text, key, words", [
    ('goal = "book"\nopening = "hi"\n', "expect", "is required"),
    ('goal = "shop"\nopening = "hi"\n[expect]\n', "goal", "not one of"),
    (BOOK.replace('when = "name"', 'when = "name("'), "reply[3].when", "not a valid pattern"),
    (BOOK.replace("[expect]", "[expect]\nbookd = 1"), "expect.bookd", "unknown key"),
    (BOOK.replace('time = "11:00"}', 'time = "11"}'), "expect.booked.time", "not a time"),
    (BOOK.replace('date = "next tuesday"', 'date = "someday"'), "expect.booked.date", "not a date"),
    ('goal = "move"\nopening = "hi"\n[expect]\noutcome = "completed"\n', "expect.moved", "required for goal"),
    ('goal = "cancel"\nopening = "hi"\n[[seed]]\nid = "a"\nname = "A"\ndate = "monday"\ntime = "8 am"\n'
     '[expect]\ncancelled = ["a"]\n', "seed[0].time", "not a time"),
    ('goal = "cancel"\nopening = "hi"\n[expect]\ncancelled = ["gone"]\n', "expect.cancelled", "not the id"),
    ('goal = "answer"\nopening = "hi"\n[[reply]]\nwhen = "x"\nsay = "y"\nhangup = true\n[expect]\nheard = "x"\n',
     "reply[0].say", "hangs up"),
    ('goal = "answer"\nopening = []\n[expect]\nheard = "x"\n', "opening", "non-empty list"),
])
def test_a_broken_file_is_refused_naming_the_file_and_the_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ScriptError) as err:
        load_script(path)
    assert str(err.value).startswith(f"{path}: {key}: ") and words in str(err.value), str(err.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, 'goal = "book\n')
    with pytest.raises(ScriptError, match=rf"^{path}: is not valid TOML"):
        load_script(path)


def test_the_shipped_callers_load_and_cover_every_goal():
    callers = script.load_dir()
    assert len(callers) >= 30 and len({c.name for c in callers}) == len(callers)
    assert {c.goal for c in callers} == set(script.GOALS)
    assert len({c.voice for c in callers}) >= 4  # several speeds and pitches
    assert [c.name for c in script.select(callers, ["book-plain", "cancel-*"])][0] == "book-plain"
    with pytest.raises(ValueError, match="matches no caller"):
        script.select(callers, ["no-such-caller"])


def test_dates_are_read_as_the_agent_reads_them():
    assert resolve_date("tuesday", MONDAY) == dt.date(2026, 12, 8)
    assert resolve_date("monday", MONDAY) == dt.date(2026, 12, 14)  # a bare weekday is never today
    assert resolve_date("this monday", MONDAY) == MONDAY
    assert resolve_date("next tuesday", MONDAY) == resolve_date("Tuesday next week", MONDAY) == dt.date(2026, 12, 15)
    assert resolve_date("tuesday after next", MONDAY) == dt.date(2026, 12, 22)
    assert resolve_date("in 3 days", MONDAY) == resolve_date("+3", MONDAY) == dt.date(2026, 12, 10)
    assert resolve_date("2027-01-04", MONDAY) == dt.date(2027, 1, 4)


def test_the_caller_answers_what_was_asked_and_rephrases_when_asked_again(tmp_path):
    caller = ScriptedCaller(load_script(write(tmp_path, BOOK)))
    assert caller("Thank you for calling. How can I help?") == "I'd like to book."
    assert caller("Sorry?") == "Can I book an appointment?"  # not understood: its last line, said another way
    assert caller("May I have your name, please?") == "Lisa Jones."
    assert caller("Sorry, I didn't catch that. May I have your name?") == "L-I-S-A Jones."
    assert caller("Could you spell your name?") == "My name is Lisa Jones."  # `unless`: no rule, so the last
    assert caller("And what time suits you?") == "Ten."
    assert caller("So that's Lisa Jones at 10:00. Shall I book it?") == "No, make it eleven."
    assert caller.state == "corrected"
    assert caller("And at what time?") == "Eleven."
    assert caller("So that's Lisa Jones at 11:00. Shall I book it?") == "Yes."
    assert caller("One moment.") == ""  # built-in: keep listening
    assert caller("You're booked. Is there anything else I can help with?").startswith("No, that's all")
    assert caller("Have a great day, goodbye!") is None


def test_without_defaults_nothing_is_said_that_the_file_does_not_say(tmp_path):
    s = load_script(write(tmp_path, 'goal = "answer"\nopening = "Hours?"\ndefaults = false\n[expect]\nheard = "9"\n'))
    caller = ScriptedCaller(s)
    assert caller("Hello") == "Hours?" and caller("Goodbye!") == "Hours?"


def facts(**kw) -> CallFacts:
    return CallFacts(outcome=kw.pop("outcome", "completed"), **kw)


def test_the_verdict_checks_the_booking_system_and_the_record(tmp_path):
    s = load_script(write(tmp_path, BOOK))
    tue = "2026-12-15"
    good = {"id": 1, "name": "Lisa Jones", "phone": "+15557654321", "date": tue, "time": "11:00"}
    assert check(s, facts(appointments=[good]), MONDAY) == []
    why = check(s, facts(appointments=[{**good, "time": "10:00"}], transfers=["front_desk"], outcome="transferred"),
                MONDAY)
    assert len(why) == 3 and "no new appointment for Lisa Jones on 2026-12-15" in why[0], why
    assert "transferred to front_desk" in why[1] and "outcome 'transferred'" in why[2]

    move = load_script(write(tmp_path, """
goal = "move"
opening = "Move it."
[[seed]]
id = "a"
name = "Maria"
date = "next monday"
time = "09:00"
[expect]
moved = {seed = "a", date = "next thursday", time = "15:30"}
heard = [["found"], ["done"]]
""", "move.toml"))
    seeded = {"a": {"id": 7, "name": "Maria", "phone": "1", "date": "2026-12-14", "time": "09:00"}}
    moved = {"id": 7, "name": "Maria", "phone": "1", "date": "2026-12-17", "time": "15:30"}
    heard = ["I found your appointment.", "Done. It's moved."]
    assert check(move, facts(appointments=[moved], seeded=seeded, agent_turns=heard), MONDAY) == []
    why = check(move, facts(appointments=[], seeded=seeded, agent_turns=heard[:1]), MONDAY)
    assert why == ["appointment 'a' was to be moved but is gone", "no agent turn matched all of: done"]


def test_a_question_asked_a_third_time_is_a_loop():
    turns = ["What day would you like to come in?", "Sorry, I didn't catch that. What day would you like to come in?",
             "And what time suits you?", "No problem. What day would you like to come in?"]
    assert loops(turns) == ["what day would you like to come in"]
    assert loops(turns[:2]) == []


HOURS = """
goal = "answer"
opening = ["What time are you open on Saturday?", "Are you open on Saturdays?"]
max_turns = 4
timeout_s = 75
[[reply]]
when = "saturday"
say = "Thank you. Goodbye."
[expect]
heard = "saturday"
outcome = "completed"
"""


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("baresip") is None, reason="scripts/test installs baresip")
def test_one_scripted_caller_through_the_whole_appliance(models_dir, tmp_path):
    """The simplest caller (asks the Saturday hours, says goodbye) as a real call: baresip,
    G.711, every service, the call record; the report says it succeeded."""
    from appliance.bench import conversations
    from appliance.config.loader import parse

    write(tmp_path, HOURS, "hours.toml")
    config = parse(f'[paths]\nmodels_dir = "{models_dir}"\n')
    rep = conversations.run(config, script.load_dir(tmp_path))
    assert rep["callers"] == 1 and rep["harness_errors"] == [], rep
    assert rep["succeeded"] == 1 and rep["success_rate"] == 1.0, conversations.render(rep)
    (result,) = rep["results"]
    assert result["outcome"] == "completed" and result["caller_turns"] >= 1 and not result["transfers"]
