"""The demo's and e2e tests' caller answers what the agent asks, and when asked the same thing
again (it was not understood) says it another way, as a person would: the same words into the
same recogniser would only be misheard the same way again."""

from __future__ import annotations

from appliance.bench.callers import BookingCaller


def test_the_caller_answers_the_question_and_rephrases_when_asked_again():
    caller = BookingCaller(ask_hours=False)
    assert caller("How can I help?") == "I would like to book an appointment."
    assert caller("May I have your name, please?") == "My name is John Smith."
    assert caller("What day would you like to come in?") == "Next Tuesday, please."
    first = caller("And what time suits you?")
    again = caller("Sorry, I didn't catch that. And what time suits you?")
    third = caller("Sorry, I didn't catch that. And what time suits you?")
    assert first == "At 10 am, please." and len({first, again, third}) == 3
    assert caller("Sorry, I didn't catch that. And what time suits you?") == first  # round again
    assert caller("So that's John Smith on Tuesday at 10:00. Shall I book it?") == "Yes please."
    assert caller("You're booked. Is there anything else I can help with?").startswith("No, that's all")
    assert caller.confirmed and caller("Have a great day, goodbye!") is None


def test_the_caller_answers_a_read_back_and_which_part():
    caller = BookingCaller(ask_hours=False)
    assert caller("We're not open at one a.m. Did you mean one p.m.?") == "No."
    assert caller("Was that ten a.m.?") == "Yes."
    assert caller("Which part should I change: the name, the day, or the time?") == "The time."
    assert caller("So that's John Smith on Tuesday, December eighth at ten a.m. Shall I book it?") == "Yes please."
