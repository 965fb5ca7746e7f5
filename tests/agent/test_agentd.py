"""agentd as a real process with the example receptionist: scripted caller text in, the
agent's speech and actions out over the real bus, tools on a real local HTTP server."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

from appliance.agent.records import CallRecords


def records(sandbox) -> CallRecords:
    return CallRecords(Path(sandbox["root"]) / "state" / "calls.db", readonly=True)


def next_weekday(n: int = 1) -> dt.date:
    day = dt.date.today() + dt.timedelta(days=n)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def test_greets_and_answers_opening_hours(agentd, line, sandbox):
    svc = agentd()
    line.start_call("c1")
    (greeting,) = line.wait_says("c1", 1)
    assert "Riverside Dental" in greeting
    line.caller_says("c1", "what time are you open on saturday")
    said = line.wait_says("c1", 2)
    assert "9" in said[-1] or "nine" in said[-1].lower(), said
    status = svc.status().details  # the operator's view: last minute's latency per stage
    assert status["turns_last_min"] == 1 and status["total_p50_ms"] >= status["endpoint_p50_ms"] > 0
    line.hang_up("c1")
    line.wait(lambda: (records(sandbox).get_call("c1") or {}).get("outcome") not in (None, "in-progress"),
              what="the call record to close")
    call = records(sandbox).get_call("c1")
    roles = [t.role for t in call.turns]
    assert roles[:3] == ["agent", "caller", "agent"] and call.outcome == "completed"
    assert call.turns[1].text == "what time are you open on saturday"


def test_books_an_appointment_through_the_booking_system(agentd, line, sandbox, booking):
    agentd()
    line.start_call("c2", caller="+15550001111")
    line.wait_says("c2", 1)
    day = next_weekday(2)
    line.caller_says("c2", "I'd like to book an appointment")
    line.wait_says("c2", 2)
    line.caller_says("c2", "my name is Ann Lee")
    line.wait_says("c2", 3)
    line.caller_says("c2", f"on {day.strftime('%B')} {day.day}")
    line.wait_says("c2", 4)
    line.caller_says("c2", "at 10 am")
    said = line.wait_says("c2", 5)
    assert "Ann" in said[-1] and ("yes" in said[-1].lower() or "?" in said[-1]), said
    line.caller_says("c2", "yes please")
    said = line.wait_says("c2", 6)
    with sqlite3.connect(booking.server.db_path if hasattr(booking.server, "db_path") else booking.db_path) as db:
        rows = db.execute("SELECT name, date, time FROM appointments").fetchall()
    tools = records(sandbox).get_call("c2").tools
    assert rows == [("Ann Lee", day.isoformat(), "10:00")], (rows, said, [(t.tool, t.args, t.status, t.result, t.error) for t in tools])
    tools = records(sandbox).get_call("c2").tools
    assert [t.tool for t in tools if t.status == "ok"][-1] == "book_appointment"


def test_transfers_on_request_with_context(agentd, line, sandbox):
    agentd()
    line.start_call("c3")
    line.wait_says("c3", 1)
    line.caller_says("c3", "can I talk to a real person please")
    line.wait(lambda: line.calls["c3"].transfers, what="a transfer")
    (transfer,) = line.calls["c3"].transfers
    assert transfer.target == "sip:frontdesk@pbx.local"
    assert transfer.headers["X-Appliance-Intent"] == "speak_to_human" and transfer.headers["X-Appliance-Summary"]
    rec = records(sandbox).get_call("c3")
    line.wait(lambda: records(sandbox).get_call("c3").transfers, what="the transfer record")
    (t,) = records(sandbox).get_call("c3").transfers
    assert t.target == "front_desk" and "summary" in t.context
    assert rec is not None


def example_variant(sandbox, booking, prefix: str, *edits: tuple[str, str]) -> str:
    """A copy of the example agent named ``prefix-...`` with ``edits`` (old, new) applied; its name."""
    import tomllib

    from appliance.agent.examples.clinic import install_example_agent

    agents = Path(sandbox["root"]) / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    text = install_example_agent(agents, booking.url).read_text().replace('name = "', f'name = "{prefix}-', 1)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    (agents / f"{prefix}.toml").write_text(text)
    return tomllib.loads(text)["name"]


def test_a_target_without_context_headers_gets_a_plain_refer_and_the_record_keeps_the_context(agentd, line, sandbox, booking):
    name = example_variant(sandbox, booking, "plain", ("[[transfer_targets]]\n", "[[transfer_targets]]\ncontext_headers = false\n"))
    agentd()
    line.start_call("c3b", callee=name)
    line.wait_says("c3b", 1)
    line.caller_says("c3b", "can I talk to a real person please")
    line.wait(lambda: line.calls["c3b"].transfers, what="a transfer")
    (transfer,) = line.calls["c3b"].transfers
    assert transfer.target == "sip:frontdesk@pbx.local" and transfer.headers == {}
    line.wait(lambda: records(sandbox).get_call("c3b").transfers, what="the transfer record")
    (t,) = records(sandbox).get_call("c3b").transfers
    assert t.context["intent"] == "speak_to_human" and t.context["summary"]


def test_barge_in_cancels_speech_and_keeps_only_what_was_heard(agentd, line, sandbox):
    line.seconds_per_char = 0.05  # the greeting takes several seconds to "play"
    agentd()
    line.start_call("c4")
    line.wait(lambda: line.calls["c4"].says, what="the greeting to start")
    time.sleep(1.0)
    u, start = line.caller_starts_talking("c4")
    line.wait(lambda: line.calls["c4"].pauses, timeout=5, what="the agent to pause for the caller")
    assert not line.calls["c4"].cancels  # paused, not stopped, until the words are known
    line.caller_stops("c4", u, start, "when are you open")
    line.wait(lambda: line.calls["c4"].cancels, timeout=5, what="a barge-in")
    line.wait(lambda: line.calls["c4"].flushes == 1, timeout=2, what="one flush of sipd's queue (by ttsd)")
    line.wait_says("c4", 2, timeout=40)  # the answer "plays" at 50 ms a character
    greeting_turn = line.calls["c4"].says[0].turn
    heard = line.calls["c4"].heard[greeting_turn]
    full = line.calls["c4"].turns()[greeting_turn]
    assert heard and len(heard) < len(full)
    rec = records(sandbox).get_call("c4")
    first = rec.turns[0]
    assert first.interrupted and first.heard_text == heard


def test_a_cough_or_mhm_does_not_stop_the_agent(agentd, line, sandbox):
    line.seconds_per_char = 0.05
    agentd()
    line.start_call("c5")
    line.wait(lambda: line.calls["c5"].says, what="the greeting to start")
    u, start = line.caller_starts_talking("c5")  # a cough: 100 ms, then asrd calls it too short
    time.sleep(0.1)
    line.caller_stops("c5", u, start, None, reason="too-short")
    u, start = line.caller_starts_talking("c5")  # "mhm": short, recognised as a backchannel
    time.sleep(0.15)
    line.caller_stops("c5", u, start, "mhm")
    time.sleep(1.0)
    assert line.calls["c5"].cancels == [] and len(line.calls["c5"].turns()) == 1


def test_a_long_mhm_okay_or_right_over_the_agent_pauses_it_and_it_goes_on(agentd, line, sandbox):
    """400-700 ms of "mhm" / "okay" / "right" is longer than barge_in_min_ms: the agent pauses,
    and once the words are known it resumes where it paused; its turn is never cut."""
    line.seconds_per_char = 0.08  # the greeting "plays" for several seconds
    agentd()
    line.start_call("c5b")
    line.wait(lambda: line.calls["c5b"].says, what="the greeting to start")
    for n, (word, seconds) in enumerate([("Mhm.", 0.5), ("Okay.", 0.7), ("Right.", 0.4)], start=1):
        u, start = line.caller_starts_talking("c5b")
        time.sleep(seconds)
        line.wait(lambda n=n: line.calls["c5b"].pauses >= n, timeout=5, what=f"a pause for {word!r}")
        line.caller_stops("c5b", u, start, word)
        line.wait(lambda n=n: line.calls["c5b"].resumes >= n, timeout=5, what=f"a resume after {word!r}")
    assert line.calls["c5b"].cancels == [] and len(line.calls["c5b"].turns()) == 1
    greeting = line.calls["c5b"].says[0].turn
    line.wait(lambda: records(sandbox).get_call("c5b").turns[0].heard_text, timeout=20, what="the greeting's end")
    first = records(sandbox).get_call("c5b").turns[0]
    assert not first.interrupted and first.heard_text == line.calls["c5b"].turns()[greeting]


def test_a_caller_who_starts_talking_just_before_the_agents_audio_still_pauses_it(agentd, line, sandbox):
    """speech.started (asrd) and tts.started (ttsd) come from two services in either order: a
    caller who starts a moment before the agent's first audio is talking over the agent too."""
    line.seconds_per_char = 0.08
    line.first_audio_s = 0.4
    agentd()
    line.start_call("c5x")
    line.wait(lambda: line.calls["c5x"].says, what="the greeting to be asked for")
    u, start = line.caller_starts_talking("c5x")  # before ttsd says its audio started
    time.sleep(1.0)
    line.wait(lambda: line.calls["c5x"].pauses, timeout=5, what="a pause")
    line.caller_stops("c5x", u, start, "Okay.")
    line.wait(lambda: line.calls["c5x"].resumes, timeout=5, what="the agent to go on")


def _talk_over_the_greeting(agentd, line, call_id: str, seconds: float) -> tuple[int, int]:
    """A call whose greeting plays slowly, and a caller who talks over it for ``seconds``: the
    agent pauses (not stops) for them. Returns the utterance and its start, for caller_stops."""
    agentd()
    line.start_call(call_id)
    line.wait(lambda: line.calls[call_id].says, what="the greeting to start")
    u, start = line.caller_starts_talking(call_id)
    time.sleep(seconds)
    line.wait(lambda: line.calls[call_id].pauses, timeout=5, what="a pause")
    return u, start


def test_wait_actually_over_the_agent_stops_it_and_is_the_turn(agentd, line, sandbox):
    line.seconds_per_char = 0.08
    u, start = _talk_over_the_greeting(agentd, line, "c5c", 0.6)
    line.caller_stops("c5c", u, start, "Wait, actually, when are you open on Saturday?")
    line.wait(lambda: line.calls["c5c"].cancels, timeout=5, what="the agent to stop")
    assert line.calls["c5c"].resumes == 0
    line.wait_says("c5c", 2, timeout=40)
    answer = line.calls["c5c"].agent_text()[-1].lower()
    assert "saturday" in answer, answer
    rec = records(sandbox).get_call("c5c")
    assert rec.turns[0].interrupted and rec.turns[1].role == "caller" and "actually" in rec.turns[1].text


def test_one_word_over_the_agent_does_not_stop_it_and_is_answered_after(agentd, line, sandbox):
    """Fewer words than barge_in_min_words are not a barge-in, but they are not lost either: the
    agent finishes its sentence, then takes them as the caller's turn."""
    line.seconds_per_char = 0.05
    u, start = _talk_over_the_greeting(agentd, line, "c5e", 0.5)
    line.caller_stops("c5e", u, start, "Appointments.")
    line.wait(lambda: line.calls["c5e"].resumes, timeout=3, what="the agent to go on")
    assert len(line.calls["c5e"].turns()) == 1  # not answered over its own sentence
    line.wait_says("c5e", 2, timeout=30)
    assert line.calls["c5e"].cancels == []
    assert "name" in line.calls["c5e"].agent_text()[-1].lower()  # "Appointments." started a booking
    rec = records(sandbox).get_call("c5e")
    assert not rec.turns[0].interrupted and rec.turns[1].role == "caller"


def test_speech_over_the_agent_that_yields_no_words_resumes_it(agentd, line, sandbox):
    """A paused agent never stays silent: noise the recogniser drops resumes it, and so does a
    final that never comes (the pause guard)."""
    line.seconds_per_char = 0.08
    u, start = _talk_over_the_greeting(agentd, line, "c5d", 0.5)
    line.caller_stops("c5d", u, start, None)  # asrd publishes no final at all
    line.wait(lambda: line.calls["c5d"].resumes, timeout=6, what="the pause guard to resume")
    assert line.calls["c5d"].cancels == []


def _early(line, call_id: str, utterance: int, text: str) -> None:
    from appliance.bus.messages import AsrEarly

    line.publish("asrd", AsrEarly(call_id=call_id, utterance=utterance, text=text, voiced_frames=50))


def test_the_answer_to_the_words_so_far_is_made_ready_and_said_only_when_the_turn_ends(agentd, line, sandbox):
    agentd()
    line.start_call("s1")
    line.wait_says("s1", 1)
    u, start = line.caller_starts_talking("s1")
    _early(line, "s1", u, "Where are you located?")
    line.wait(lambda: line.calls["s1"].speculated, timeout=5, what="the speculated answer")
    time.sleep(0.3)
    assert len(line.calls["s1"].says) == 1  # made ready in ttsd, nothing said before the turn ends
    line.caller_stops("s1", u, start, "Where are you located?")
    line.wait_says("s1", 2)
    (ready,) = line.calls["s1"].speculated
    assert line.calls["s1"].agent_text()[-1] == " ".join(ready)  # the same words: the same answer


def test_a_caller_who_pauses_and_goes_on_never_hears_the_speculated_answer(agentd, line, sandbox):
    agentd()
    line.start_call("s2")
    line.wait_says("s2", 1)
    u, start = line.caller_starts_talking("s2")
    _early(line, "s2", u, "Where are you located?")
    line.wait(lambda: line.calls["s2"].speculated, timeout=5, what="the speculated answer")
    time.sleep(0.5)  # ... and the caller goes on in the same utterance
    line.caller_stops("s2", u, start, "Where are you located? No wait, what time are you open on Saturday?")
    line.wait_says("s2", 2)
    (held,) = line.calls["s2"].speculated
    answer = line.calls["s2"].agent_text()[-1]
    assert answer != " ".join(held) and "saturday" in answer.lower(), answer
    said = " ".join(s.text for s in line.calls["s2"].says)
    assert all(text not in said for text in held)  # never played
    rec = records(sandbox).get_call("s2")
    assert all(text not in t.text for t in rec.turns for text in held)  # and never in the record


def test_no_speculation_for_a_tool_or_mid_sentence_words(agentd, line, sandbox):
    agentd()
    line.start_call("s3")
    line.wait_says("s3", 1)
    u, _ = line.caller_starts_talking("s3")
    _early(line, "s3", u, "My name is")  # ends mid-phrase
    _early(line, "s3", u, "Can I speak to a person please?")  # a transfer: an action, not speech
    time.sleep(0.8)
    assert line.calls["s3"].speculated == [] and not line.calls["s3"].transfers


def test_tool_timeout_gets_a_filler_and_an_apology(agentd, line, sandbox, booking):
    from appliance.agent.examples.clinic import Faults

    booking.server.faults = Faults(delay_ms=5000)
    agentd()
    line.start_call("c6")
    line.wait_says("c6", 1)
    day = next_weekday(3)
    for text in ("book an appointment please", "my name is Bob Stone", f"{day.strftime('%A')} the {day.day}",
                 "at 2 pm", "yes"):
        n = len(line.calls["c6"].turns())
        line.caller_says("c6", text, seconds=0.5)
        line.wait_says("c6", n + 1, timeout=20)
    line.wait(lambda: line.calls["c6"].transfers or any("sorry" in t.lower() for t in line.calls["c6"].agent_text()[5:]),
              timeout=20, what="an apology")
    said = " ".join(line.calls["c6"].agent_text()).lower()
    assert "one moment" in said and "sorry" in said
    tools = records(sandbox).get_call("c6").tools
    assert tools and tools[-1].status == "timeout"


def test_survives_agentd_being_killed_mid_call(agentd, line, sandbox):
    first = agentd()
    line.start_call("c7")
    line.wait_says("c7", 1)
    line.caller_says("c7", "I want to book an appointment")
    line.wait_says("c7", 2)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    second = agentd()  # a restart (systemd would do it) rebuilds the conversation from the record
    line.wait(lambda: second.status().details.get("rebuilt") == 1, what="the rebuilt conversation")
    line.caller_says("c7", "my name is Carol King")
    try:
        said = line.wait_says("c7", 3, timeout=20)
    except AssertionError:
        raise AssertionError(second.output()) from None
    assert "Riverside Dental" not in said[-1]  # not greeted again
    assert "date" in said[-1].lower() or "day" in said[-1].lower() or "when" in said[-1].lower(), said


def test_a_broken_agent_file_stops_agentd_with_every_problem(agentd, sandbox):
    agents = Path(sandbox["root"]) / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "broken.toml").write_text('name = "x"\ngreeting = 5\nmood = "sunny"\n[[intents]]\nname = "a"\n'
                                        'examples = ["one"]\n')
    svc = agentd(wait_ready=False)
    assert svc.proc.wait(30) != 0
    out = svc.output()
    assert "broken.toml: greeting: must be a string, got 5" in out, out
    assert "mood: unknown key" in out and "Traceback" not in out, out


def test_calls_cli_shows_the_record(agentd, line, sandbox):
    import subprocess
    import sys

    agentd()
    line.start_call("c8")
    line.wait_says("c8", 1)
    line.caller_says("c8", "where are you located")
    line.wait_says("c8", 2)
    line.hang_up("c8")
    time.sleep(0.5)
    ctl = [sys.executable, "-m", "appliance", "--config", str(sandbox["config"])]
    out = subprocess.run(ctl + ["call", "show", "c8", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["id"] == "c8" and len(data["turns"]) >= 3


def test_an_unmatched_question_gets_a_spoken_llm_answer(agentd, line):
    agentd()
    line.start_call("c9")
    line.wait_says("c9", 1)
    line.caller_says("c9", "what do you think about the weather today")
    said = line.wait_says("c9", 2, timeout=30)[-1]
    assert len(said.split()) >= 2 and not set(said) & set("<>{}[]|`*#_"), said


def test_without_the_llm_an_unmatched_question_gets_a_safe_reprompt(agentd, line):
    agentd('[agent]\nllm = false')
    line.start_call("c10")
    line.wait_says("c10", 1)
    line.caller_says("c10", "what do you think about the weather today")
    said = line.wait_says("c10", 2)[-1]
    assert "sorry" in said.lower(), said


def test_a_busy_front_desk_gives_the_call_back_with_an_offer_to_take_a_message(agentd, line, sandbox):
    line.transfer_result = (486, "Busy Here")
    agentd()
    line.start_call("c11")
    line.wait_says("c11", 1)
    line.caller_says("c11", "put me through to the front desk please")
    line.wait(lambda: line.calls["c11"].transfers, what="a transfer")
    said = line.wait_says("c11", 3)
    assert "message" in said[-1].lower(), said
    line.wait(lambda: any(t.status == "failed" for t in records(sandbox).get_call("c11").transfers),
              what="the failed transfer in the record")
    (t,) = records(sandbox).get_call("c11").transfers
    assert t.sip_status == 486


def test_a_pause_mid_sentence_is_not_the_end_of_the_turn(agentd, line):
    agentd()
    line.start_call("c12")
    line.wait_says("c12", 1)
    line.caller_says("c12", "I would like to", seconds=0.5)
    line.caller_says("c12", "book an appointment", seconds=0.6)
    said = line.wait_says("c12", 2)
    time.sleep(0.8)
    assert len(line.calls["c12"].turns()) == 2  # one answer to the whole sentence, not two
    assert "name" in said[-1].lower(), said


def test_incomplete_endings():
    from appliance.agent.conversation import incomplete

    assert incomplete("my number is") and incomplete("I want to book and") and incomplete("um,")
    assert not incomplete("I want to book an appointment") and not incomplete("yes") and not incomplete("")
    assert incomplete("Actually.") and incomplete("Well, um") and not incomplete("Okay.")  # only an opener
    assert incomplete("The number is 555.") and incomplete("It's 555 867")  # a phone number's first groups
    assert not incomplete("My number is 555 867 5309.") and not incomplete("At 10.") and not incomplete("Room 305.")


def test_no_reprompts_while_a_transfer_is_out_and_a_silent_pbx_means_failure(agentd, line, sandbox, booking):
    line.transfer_result = None  # the PBX accepts the REFER and never reports how it went
    name = example_variant(sandbox, booking, "quick", ("no_input_s = 8.0", "no_input_s = 1.0"))
    agentd('[agent]\nllm = false')
    line.start_call("c13", callee=name)
    line.wait_says("c13", 1)
    line.caller_says("c13", "can I speak to a person")
    line.wait(lambda: line.calls["c13"].transfers, what="a transfer")
    n = len(line.calls["c13"].turns())
    time.sleep(3.0)
    assert len(line.calls["c13"].turns()) == n  # no "Are you still there?" while the human is being rung


def test_a_final_that_arrives_while_the_caller_goes_on_waits_for_the_rest(agentd, line):
    """"Um, hi." ended on a pause and its transcript came while the caller was already saying
    the rest: the agent answers the whole turn once, not "Hello! How can I help" into the pause."""
    from appliance.bus.messages import AsrFinal, SpeechStopped

    agentd()
    line.start_call("c13")
    line.wait_says("c13", 1)
    u1, t1 = line.caller_starts_talking("c13")
    time.sleep(0.4)
    line.publish("asrd", SpeechStopped(call_id="c13", utterance=u1, seq=u1 * 1000 + 20, end_ns=time.monotonic_ns(),
                                       reason="silence"))
    u2, t2 = line.caller_starts_talking("c13")  # goes on before the first part's transcript is out
    line.publish("asrd", AsrFinal(call_id="c13", utterance=u1, text="Um, hi.", digits="Um, hi.", confidence=0.9,
                                  start_ns=t1, end_ns=t2, latency_ms=100.0, words=[]))
    time.sleep(1.5)  # longer than incomplete_wait_ms: only "the caller is still talking" holds it
    assert len(line.calls["c13"].turns()) == 1
    line.caller_stops("c13", u2, t2, "I was wondering if I could book an appointment")
    said = line.wait_says("c13", 2)
    time.sleep(0.8)
    assert len(line.calls["c13"].turns()) == 2 and "name" in said[-1].lower(), said


def test_agentd_sends_the_agents_fixed_lines_to_ttsds_clause_cache(agentd, line):
    agentd('[agent]\nllm = false')
    line.wait(lambda: line.prepared, what="tts.prepare")
    assert "What day would you like to come in?" in line.prepared and "How can I help?" in line.prepared
    assert not any("{" in text for text in line.prepared)  # templates only by their fixed sentences
