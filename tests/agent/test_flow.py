"""The flow as scripted calls against the example dental receptionist: hand-built
understandings in, the agent's actions out (no audio, no models, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.agent.definition import load_agent
from appliance.agent.actions import AskLlm, CallTool, Hangup, Say, TakeMessage, Transfer
from appliance.agent.flow import Flow, FlowState, Understanding, render, render_arg
from appliance.agent.tools import ToolResult

EXAMPLE = Path(__file__).resolve().parents[2] / "appliance" / "agent" / "examples" / "dental-receptionist.toml"
AGENT = load_agent(EXAMPLE)
CALLER = "+15551234567"
APPOINTMENT = {"id": 7, "name": "Ann Lee", "phone": CALLER, "date": "2026-11-26", "time": "09:30", "reason": ""}
CONNECT = "Let me put you through to someone who can help."


class Call:
    """One scripted call: each step returns the actions the agent takes."""

    def __init__(self, caller: str = CALLER, agent=AGENT):
        self.flow = Flow(agent)
        self.state = self.flow.initial_state(caller)
        self.greeting = self.flow.start(self.state)

    def hear(self, text: str, **kw) -> list:
        self.state, actions = self.flow.on_utterance(self.state, Understanding(text=text, **kw))
        return actions

    def tool(self, status: str = "ok", data: dict | None = None, http_status: int | None = None) -> list:
        result = ToolResult(status, data=data, error="" if status == "ok" else "it broke", http_status=http_status)
        self.state, actions = self.flow.on_tool_result(self.state, result)
        return actions

    def silence(self) -> list:
        self.state, actions = self.flow.on_no_input(self.state)
        return actions

    def transfer_failed(self, status: int = 486) -> list:
        self.state, actions = self.flow.on_transfer_failed(self.state, status)
        return actions

    def refused(self) -> list:
        """Booked to the confirmation, said yes, and the booking system answered 409 (taken)."""
        self.book_until_confirm()
        self.hear("yes", yes_no="yes")
        return self.tool("error", http_status=409)

    def book_until_confirm(self) -> list:
        self.hear("I'd like to book an appointment", intent="book_appointment")
        return self.hear("Ann Lee on Thursday at 9:30", slots={"name": "Ann Lee", "date": "2026-11-26", "time": "09:30"})


def texts(actions) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def test_the_call_opens_with_the_greeting():
    assert Call().greeting == [Say(AGENT.greeting)]


def test_opening_hours_by_intent_and_other_questions_by_knowledge():
    call = Call()
    assert call.hear("When are you open?", intent="opening_hours", intent_score=0.8) == [
        Say("We're open Monday to Friday from nine a.m. to five p.m.; we're closed on Saturday and Sunday.")]
    assert call.hear("Where can I park?", knowledge_id="parking", knowledge_score=0.7) == [
        Say("There's free parking for patients behind the building; the entrance is on Mill Lane.")]
    assert call.state.node is None and call.state.misunderstandings == 0


def test_booking_with_the_slots_one_at_a_time():
    call = Call()
    assert texts(call.hear("I'd like to book an appointment", intent="book_appointment")) == [
        "Of course. May I have your name, please?"]
    assert texts(call.hear("Ann Lee.")) == ["What day would you like to come in?"]  # a name: the words themselves
    assert texts(call.hear("Thursday", slots={"date": "2026-11-26"})) == [
        "And what time suits you? We have appointments from nine a.m. to five p.m."]
    assert texts(call.hear("half past nine", slots={"time": "09:30"})) == [
        "So that's an appointment for Ann Lee on Thursday, November twenty-sixth at nine thirty a.m. Shall I book it?"]
    assert call.hear("yes please", yes_no="yes") == [CallTool("book_appointment", {
        "name": "Ann Lee", "phone": CALLER, "date": "2026-11-26", "time": "09:30", "reason": "booked by phone"})]
    assert call.tool(data={"id": 1, "date": "2026-11-26", "time": "09:30"}) == [
        Say("You're booked for Thursday, November twenty-sixth at nine thirty a.m. We look forward to seeing you. Is there anything else I can help with?")]
    assert call.state.node is None and call.state.intent == "book_appointment"


def test_booking_with_everything_said_at_once():
    call = Call()
    actions = call.hear("Book Ann Lee in on Thursday at 9:30", intent="book_appointment",
                        slots={"name": "Ann Lee", "date": "2026-11-26", "time": "09:30"})
    assert texts(actions) == ["So that's an appointment for Ann Lee on Thursday, November twenty-sixth at nine thirty a.m. Shall I book it?"]
    assert call.state.node == "book_confirm"


def test_a_slot_given_early_is_not_asked_again():
    call = Call()
    assert texts(call.hear("Can I come in on Thursday?", intent="book_appointment", slots={"date": "2026-11-26"})) == [
        "Of course. May I have your name, please?"]
    assert texts(call.hear("It's Ann")) == ["And what time suits you? We have appointments from nine a.m. to five p.m."]
    assert call.state.slots["name"] == "Ann"


def test_without_the_callers_number_the_phone_is_asked_for():
    call = Call(caller="")
    call.hear("I'd like to book", intent="book_appointment",
              slots={"name": "Ann Lee", "date": "2026-11-26", "time": "09:30"})
    assert call.state.node == "book" and texts(call.silence())[0].endswith("What's the best phone number to reach you?")
    assert texts(call.hear("555 987 6543", slots={"phone": "5559876543"}))[0].startswith("So that's an appointment")


def test_a_bare_no_asks_which_part_then_changes_only_that():
    call = Call()
    call.book_until_confirm()
    assert texts(call.hear("No", yes_no="no")) == ["Which part should I change: the name, the day, or the time?"]
    assert texts(call.hear("the day")) == ["No problem.", "What day would you like to come in?"]
    assert call.state.node == "book" and "date" not in call.state.slots
    assert call.state.slots["name"] == "Ann Lee" and call.state.slots["time"] == "09:30"  # the rest is kept
    assert texts(call.hear("Friday", slots={"date": "2026-11-27"})) == [
        "So that's an appointment for Ann Lee on Friday, November twenty-seventh at nine thirty a.m. Shall I book it?"]
    assert call.hear("yes", yes_no="yes")[0].args == {"name": "Ann Lee", "phone": CALLER, "date": "2026-11-27",
                                                      "time": "09:30", "reason": "booked by phone"}


def test_no_twice_asks_the_day_and_time_again():
    call = Call()
    call.book_until_confirm()
    call.hear("No", yes_no="no")
    assert texts(call.hear("No.", yes_no="no")) == ["No problem. What day would you prefer?"]
    assert call.state.node == "book_change" and "date" not in call.state.slots and call.state.slots["name"] == "Ann Lee"
    assert texts(call.hear("Friday at ten", slots={"date": "2026-11-27", "time": "10:00"})) == [
        "So that's an appointment for Ann Lee on Friday, November twenty-seventh at ten a.m. Shall I book it?"]
    assert call.hear("yes", yes_no="yes")[0].args["date"] == "2026-11-27"


@pytest.mark.parametrize("said, slots, changed", [
    ("The time's wrong.", {}, "time"),
    ("No, that's the wrong day.", {}, "date"),
])
def test_a_correction_naming_the_slot_asks_for_it_and_keeps_the_rest(said, slots, changed):
    call = Call()
    call.book_until_confirm()
    before = dict(call.state.slots)
    actions = texts(call.hear(said, yes_no="no" if said.startswith("No") else None, slots=slots))
    assert actions[0] == "No problem." and call.state.node == "book"
    assert changed not in call.state.slots
    assert {k: v for k, v in call.state.slots.items()} == {k: v for k, v in before.items() if k != changed}


def test_make_it_eleven_changes_the_time_only():
    call = Call()
    call.book_until_confirm()
    assert texts(call.hear("Can you make it eleven?", slots={"number": "11"})) == [
        "So that's an appointment for Ann Lee on Thursday, November twenty-sixth at eleven a.m. Shall I book it?"]
    assert call.state.slots["time"] == "11:00" and call.state.slots["date"] == "2026-11-26"


def test_a_no_that_carries_the_correction_is_confirmed_again():
    call = Call()
    call.book_until_confirm()
    assert texts(call.hear("No, Friday", yes_no="no", slots={"date": "2026-11-27"})) == [
        "So that's an appointment for Ann Lee on Friday, November twenty-seventh at nine thirty a.m. Shall I book it?"]
    assert call.state.node == "book_confirm"


def test_an_escalation_keyword_mid_booking_transfers_with_a_summary():
    call = Call()
    call.hear("I'd like to book an appointment", intent="book_appointment")
    call.hear("Ann", slots={"name": "Ann"})
    call.hear("Thursday", slots={"date": "2026-11-26"})
    actions = call.hear("Can I just talk to a person?")
    assert actions == [
        Say(CONNECT),
        Transfer("front_desk", "sip:frontdesk@pbx.local",
                 f"Caller wants to book an appointment; name Ann, date 2026-11-26, phone {CALLER}; asked for a person",
                 {"intent": "book_appointment", "slots": {"name": "Ann", "date": "2026-11-26", "phone": CALLER},
                  "reason": "asked for a person", "caller": CALLER, "node": "book"}),
    ]
    assert call.state.node is None


def test_the_speak_to_human_intent_transfers_from_anywhere():
    call = Call()
    actions = call.hear("Put me through to the front desk", intent="speak_to_human")
    assert texts(actions) == ["One moment, I'll put you through."]
    transfer = actions[-1]
    assert isinstance(transfer, Transfer) and transfer.uri == "sip:frontdesk@pbx.local"
    assert transfer.summary == "Caller wants to speak to the front desk; asked for front desk"
    assert transfer.context["intent"] == "speak_to_human"


def test_a_hand_off_intent_wins_over_the_escalation_keywords():
    actions = Call().hear("Can I talk to someone about an invoice?", intent="billing")
    assert actions[-1].target == "billing"


def test_a_question_is_not_taken_for_a_name():
    call = Call()
    call.hear("I'd like to book an appointment", intent="book_appointment")
    assert texts(call.hear("When are you open?", intent="opening_hours")) == [
        "We're open Monday to Friday from nine a.m. to five p.m.; we're closed on Saturday and Sunday.",
        "Of course. May I have your name, please?"]
    assert "name" not in call.state.slots


def test_a_keyword_is_a_whole_word():
    call = Call()
    assert call.hear("Is it personal?") == [AskLlm()]  # "person" inside a word is no request for one


def test_misunderstood_twice_is_handed_to_a_person():
    call = Call()
    call.hear("I'd like to book an appointment", intent="book_appointment")
    call.hear("Ann", slots={"name": "Ann"})
    assert texts(call.hear("purple elephants")) == ["Sorry, I didn't catch that. What day would you like to come in?"]
    assert call.state.misunderstandings == 1
    actions = call.hear("the moon")
    assert texts(actions) == [f"I'm sorry, I'm having trouble understanding. {CONNECT}"]
    assert actions[-1].summary == f"Caller wants to book an appointment; name Ann, phone {CALLER}; not understood 2 times"


def test_an_understood_turn_resets_the_misunderstandings():
    call = Call()
    call.hear("I'd like to book an appointment", intent="book_appointment")
    call.hear("Ann", slots={"name": "Ann"})
    call.hear("purple elephants")
    call.hear("Thursday", slots={"date": "2026-11-26"})
    assert call.state.misunderstandings == 0
    assert texts(call.hear("purple elephants")) == [
        "Sorry, I didn't catch that. And what time suits you? We have appointments from nine a.m. to five p.m."]


def test_without_free_turns_an_unplaced_question_is_a_misunderstanding():
    call = Call(agent=load_agent(EXAMPLE, overrides={"llm.free_turns": False}))
    assert texts(call.hear("Do you like jazz?")) == ["Sorry, I didn't catch that. Could you say that another way?"]
    assert isinstance(call.hear("Jazz, do you like it?")[-1], Transfer)


def test_with_free_turns_the_llm_answers_what_nothing_else_does():
    call = Call()
    assert call.hear("Do you like jazz?") == [AskLlm()]
    assert call.hear("mhm", backchannel=True) == []
    assert call.state.misunderstandings == 0


def test_a_question_mid_booking_is_answered_and_the_booking_goes_on():
    call = Call()
    call.hear("I'd like to book an appointment", intent="book_appointment", slots={"name": "Ann"})
    assert texts(call.hear("Where are you again?", knowledge_id="address")) == [
        "We're at 12 Harbour Street, next to the pharmacy, in the Riverside shopping area.",
        "What day would you like to come in?"]
    assert call.state.node == "book" and call.state.misunderstandings == 0
    # asked without the mark (as a recogniser may write it): still a question
    assert texts(call.hear("where are you again", knowledge_id="address"))[0].startswith("We're at")


def test_a_misheard_answer_mid_booking_gets_the_question_again_not_the_nearest_knowledge():
    """The demo's caller said "At 10 a.m." and Whisper wrote "at an AM, please.", whose nearest
    knowledge is the opening hours: the caller wants the question again, not the hours."""
    call = Call()
    question = texts(call.hear("I'd like to book an appointment", intent="book_appointment",
                               slots={"name": "Ann", "date": "2026-11-26"}))[-1]
    again = "Sorry, I didn't catch that. " + question
    assert texts(call.hear("at an AM, please.", knowledge_id="opening_hours")) == [again]
    assert call.state.node == "book"
    assert texts(call.hear("ten in the morning", slots={"time": "10:00"}))[0].startswith("So that's an appointment")


def test_a_tool_error_is_an_honest_apology_then_a_transfer():
    call = Call()
    call.book_until_confirm()
    call.hear("yes", yes_no="yes")
    actions = call.tool("timeout")
    assert texts(actions) == [f"I'm sorry, our booking system isn't answering right now. {CONNECT}"]
    assert actions[-1].target == "front_desk"
    assert actions[-1].summary == ("Caller wants to book an appointment; name Ann Lee, date 2026-11-26, time 09:30, "
                                   f"phone {CALLER}; book_appointment failed")


def test_a_taken_slot_offers_the_nearest_free_times_that_day_and_keeps_the_day():
    call = Call()
    (look,) = call.refused()
    assert look == CallTool("check_slots", {"date": "2026-11-26", "near": "09:30"})
    assert texts(call.tool("ok", {"date": "2026-11-26", "slots": ["09:00", "10:00"]})) == [
        "I'm sorry, nine thirty a.m. is already taken. The nearest free times on Thursday, November twenty-sixth "
        "are nine a.m. and ten a.m.", "Which time would suit you?"]
    assert texts(call.hear("ten please", slots={"time": "10:00"})) == [
        "So that's an appointment for Ann Lee on Thursday, November twenty-sixth at ten a.m. Shall I book it?"]


def test_a_taken_slot_on_a_day_that_is_otherwise_free_may_still_move_to_another_day():
    call = Call()
    call.refused()
    call.tool("ok", {"date": "2026-11-26", "slots": ["09:00", "10:00"]})
    assert texts(call.hear("Friday then", slots={"date": "2026-11-27"})) == ["Which time would suit you?"]
    assert texts(call.hear("Friday at 10", slots={"date": "2026-11-27", "time": "10:00"})) == [
        "So that's an appointment for Ann Lee on Friday, November twenty-seventh at ten a.m. Shall I book it?"]


def test_a_taken_slot_on_a_full_day_asks_for_another_day():
    call = Call()
    call.refused()
    assert texts(call.tool("ok", {"date": "2026-11-26", "slots": []})) == [
        "I'm sorry, that time is already taken. Which other day would work for you?"]
    assert texts(call.hear("Friday at 10", slots={"date": "2026-11-27", "time": "10:00"})) == [
        "So that's an appointment for Ann Lee on Friday, November twenty-seventh at ten a.m. Shall I book it?"]


def test_a_failed_transfer_offers_to_take_a_message():
    call = Call()
    call.hear("Put me through to the front desk", intent="speak_to_human")
    assert call.transfer_failed(486) == [
        Say("I'm sorry, nobody at the front desk is available right now. Can I take a message?"), TakeMessage()]
    assert texts(call.hear("Yes", yes_no="yes")) == ["Please go ahead, I'm listening."]
    actions = call.hear("Please ask Dr Lee to call me back about my crown.")
    assert actions == [
        TakeMessage("Please ask Dr Lee to call me back about my crown.",
                    "Caller wants to speak to the front desk; left a message"),
        Say(f"Thank you, I'll make sure they get your message. {AGENT.goodbye}"),
        Hangup("message-taken")]


def test_no_message_thanks_ends_the_call():
    call = Call()
    call.transfer_failed(480)
    assert call.hear("No thanks", yes_no="no") == [Say(AGENT.goodbye), Hangup("no-message")]


def test_without_an_escalation_target_the_agent_offers_a_message():
    call = Call(agent=load_agent(EXAMPLE, overrides={"escalation.target": ""}))
    assert call.hear("I want a human") == [Say("I'm sorry, nobody at the front desk is available right now. "
                                               "Can I take a message?"), TakeMessage()]


def test_silence_gets_reprompts_then_goodbye():
    call = Call()
    call.hear("I'd like to book an appointment", intent="book_appointment")
    assert call.silence() == [Say("Are you still there? Of course. May I have your name, please?")]
    assert call.silence() == [Say("Are you still there? Of course. May I have your name, please?")]
    assert call.silence() == [Say(AGENT.goodbye), Hangup("no-input")]


def test_an_answer_resets_the_reprompts():
    call = Call()
    call.silence()
    call.silence()
    call.hear("When are you open?", intent="opening_hours")
    assert call.silence() == [Say("Are you still there?")]


def test_cancelling_by_the_callers_number():
    call = Call()
    assert call.hear("I want to cancel my appointment", intent="cancel_appointment") == [
        CallTool("find_appointments", {"phone": CALLER, "name": ""})]
    assert texts(call.tool(data={"appointments": [APPOINTMENT]})) == [
        "I found your appointment on Thursday, November twenty-sixth at nine thirty a.m. Shall I cancel it?"]
    assert call.hear("yes", yes_no="yes") == [CallTool("cancel_appointment", {"id": 7})]  # an id stays an integer
    assert texts(call.tool(data={"id": 7, "cancelled": True})) == [
        "Your appointment is cancelled. Is there anything else I can help with?"]


def test_cancelling_when_nothing_is_booked_under_the_number_asks_for_it():
    call = Call()
    call.hear("I want to cancel my appointment", intent="cancel_appointment")
    assert texts(call.tool(data={"appointments": []})) == [
        "I couldn't find an appointment under this number. What number did you book with?"]
    assert call.hear("555 987 6543", slots={"phone": "5559876543"}) == [
        CallTool("find_appointments", {"phone": "5559876543", "name": ""})]
    assert texts(call.tool(data={"appointments": []})) == [  # the number as heard, so a missed digit is heard
        "I couldn't find one under five five five, nine eight seven, six five four three.",
        "Could you say the number once more, digit by digit?"]
    assert call.hear("five five five, nine eight seven, six five four two", slots={"phone": "5559876542"}) == [
        CallTool("find_appointments", {"phone": "5559876542", "name": ""})]
    assert texts(call.tool(data={"appointments": []})) == [
        "I'm sorry, I couldn't find an appointment under that number either. Let me put you through to the front desk; "
        "they can look it up by name."]
    assert call.state.node is None


def test_keeping_the_appointment_after_all():
    call = Call()
    call.hear("cancel my appointment", intent="cancel_appointment")
    call.tool(data={"appointments": [APPOINTMENT]})
    assert texts(call.hear("no, leave it", yes_no="no")) == [
        "All right, I'll leave it as it is. Is there anything else I can help with?"]


def test_moving_an_appointment():
    call = Call()
    assert call.hear("Can I move my appointment?", intent="reschedule") == [
        CallTool("find_appointments", {"phone": CALLER, "name": ""})]
    assert texts(call.tool(data={"appointments": [APPOINTMENT]})) == [
        "I found your appointment on Thursday, November twenty-sixth at nine thirty a.m. Which day would you like instead?"]
    assert texts(call.hear("Friday at 11", slots={"date": "2026-11-27", "time": "11:00"})) == [
        "So I'll move your appointment to Friday, November twenty-seventh at eleven a.m. Is that right?"]
    assert call.hear("yes", yes_no="yes") == [
        CallTool("move_appointment", {"id": 7, "date": "2026-11-27", "time": "11:00"})]
    assert texts(call.tool(data={"id": 7, "date": "2026-11-27", "time": "11:00"})) == [
        "Done. Your appointment is now on Friday, November twenty-seventh at eleven a.m. Is there anything else I can help with?"]


def test_goodbye_hangs_up_and_billing_goes_to_billing():
    assert Call().hear("That's all, bye", intent="goodbye") == [Say(AGENT.goodbye), Hangup("goodbye")]
    actions = Call().hear("I have a question about my bill", intent="billing")
    assert texts(actions) == ["Our billing team can help with that. One moment, I'll put you through."]
    assert actions[-1].uri == "sip:billing@pbx.local" and actions[-1].context["reason"] == "flow billing"


def test_a_bare_no_to_anything_else_ends_the_call_and_only_then():
    call = Call()
    call.book_until_confirm()
    call.hear("Yes", yes_no="yes")
    assert texts(call.tool(data={"id": 1, "date": "2026-11-26", "time": "09:30"}))[-1].endswith(
        "Is there anything else I can help with?")
    # the caller said "No," and paused: the endpoint cut it there ("hello" was the nearest intent)
    assert call.hear("No.", yes_no="no", intent="hello") == [Say(AGENT.goodbye), Hangup("goodbye")]
    assert Call().hear("No, thanks.", yes_no="no") == [Say(AGENT.goodbye), Hangup("goodbye")]
    # not a bare no: a question, a flow asked for, a no carrying a time
    assert texts(Call().hear("No, what time do you open on Saturday?", yes_no="no", intent="opening_hours"))[0] \
        .startswith("We're open")
    assert Hangup("goodbye") not in Call().hear("No, I want to book", yes_no="no", intent="book_appointment")
    assert Hangup("goodbye") not in Call().hear("No, at ten", yes_no="no", slots={"time": "10:00"})
    # and mid-booking a "no" is an answer, never a goodbye
    booking = Call()
    booking.hear("I'd like to book an appointment", intent="book_appointment")
    assert Hangup("goodbye") not in booking.hear("No.", yes_no="no", intent="hello")
    confirming = Call()
    confirming.book_until_confirm()
    assert Hangup("goodbye") not in confirming.hear("No.", yes_no="no")


def test_a_late_tool_result_is_ignored():
    call = Call()
    call.hear("When are you open?", intent="opening_hours")
    assert call.tool(data={"id": 1}) == []


@pytest.mark.parametrize("template, slots, result, expected", [
    ("So that's {name} on {date} at {time}.", {"name": "Ann"}, {}, "So that's Ann."),
    ("So that's {name} on {date} at {time}.", {}, {}, "So that's."),
    ("{name}, you're booked.", {}, {}, "you're booked."),
    ("Booked for {result.date} at {result.time}.", {}, {"date": "2026-11-26"}, "Booked for Thursday, November twenty-sixth."),
    ("First: {result.appointments.0.date}, tenth: {result.appointments.9.date}.", {},
     {"appointments": [{"date": "2026-11-26"}]}, "First: Thursday, November twenty-sixth, tenth."),
    ("Deep {result.id.x.y} end", {}, {"id": 3}, "Deep end"),
    ("Cancelled: {result.cancelled}; slots {result.slots}", {}, {"cancelled": True, "slots": ["09:00", "09:30"]},
     "Cancelled: yes; slots nine a.m. and nine thirty a.m."),
    ("Free: {result.slots}", {}, {"slots": ["09:00", "09:30", "10:00"]}, "Free: nine a.m., nine thirty a.m. and ten a.m."),
    ("Hello {caller}", {"caller": "+1555"}, None, "Hello +1555"),
    ("Braces {not a placeholder} stay", {}, {}, "Braces {not a placeholder} stay"),
])
def test_templates_never_raise_on_missing_values(template, slots, result, expected):
    assert render(template, slots, result) == expected


def test_tool_arguments_keep_their_types_and_blank_when_missing():
    result = {"appointments": [{"id": 7}]}
    assert render_arg("{result.appointments.0.id}", {}, result) == 7
    assert render_arg("{result.appointments.3.id}", {}, result) == ""
    assert render_arg("{name} ({phone})", {"name": "Ann"}, result) == "Ann"
    assert render_arg(30, {}, result) == 30


def test_a_missing_value_in_a_flow_sentence_leaves_a_sensible_blank():
    call = Call()
    call.hear("cancel", intent="cancel_appointment")
    assert texts(call.tool(data={"appointments": [{"id": 7, "date": "2026-11-26"}]})) == [
        "I found your appointment on Thursday, November twenty-sixth. Shall I cancel it?"]


def test_the_state_survives_a_snapshot():
    call = Call()
    call.book_until_confirm()
    flow = call.flow
    restored = flow.restore(flow.snapshot(call.state), caller=CALLER)
    assert restored == call.state
    assert flow.restore(None, caller=CALLER) == FlowState(slots={"caller": CALLER})
    assert flow.restore({"node": "gone", "slots": {}}).node is None


def test_the_examples_tools_work_against_the_example_booking_server():
    """The flow's CallTool actions, run by the real ToolRunner against the clinic's server."""
    import asyncio

    from appliance.agent.examples.clinic import BookingServer
    from appliance.agent.tools import ToolRunner

    async def scenario() -> list[str]:
        async with BookingServer() as server:
            agent = load_agent(EXAMPLE, overrides={"vars.booking_url": server.url})
            runner = ToolRunner(agent.tools)
            said: list[str] = []

            async def run(call: Call, actions) -> None:
                for action in actions:
                    if isinstance(action, CallTool):
                        result = await runner.call(action.name, action.args)
                        call.state, more = call.flow.on_tool_result(call.state, result)
                        await run(call, more)
                    elif isinstance(action, Say):
                        said.append(action.text)

            ann, bo = Call(agent=agent), Call(caller="+15550000000", agent=agent)
            await run(ann, ann.book_until_confirm())
            await run(ann, ann.hear("yes", yes_no="yes"))
            await run(ann, ann.hear("I need to cancel", intent="cancel_appointment"))
            await run(ann, ann.hear("yes", yes_no="yes"))
            await run(ann, ann.book_until_confirm())
            await run(bo, bo.hear("Book me, Bo, then", intent="book_appointment",
                                  slots={"name": "Bo", "date": "2026-11-26", "time": "09:30"}))
            await run(ann, ann.hear("yes", yes_no="yes"))
            await run(bo, bo.hear("yes", yes_no="yes"))  # Ann has the slot again
            return said

    booked = "You're booked for Thursday, November twenty-sixth at nine thirty a.m. We look forward to seeing you. Is there anything else I can help with?"
    assert asyncio.run(scenario()) == [
        "So that's an appointment for Ann Lee on Thursday, November twenty-sixth at nine thirty a.m. Shall I book it?",
        booked,
        "I found your appointment on Thursday, November twenty-sixth at nine thirty a.m. Shall I cancel it?",
        "Your appointment is cancelled. Is there anything else I can help with?",
        "So that's an appointment for Ann Lee on Thursday, November twenty-sixth at nine thirty a.m. Shall I book it?",
        "So that's an appointment for Bo on Thursday, November twenty-sixth at nine thirty a.m. Shall I book it?",
        booked,
        "I'm sorry, nine thirty a.m. is already taken. The nearest free times on Thursday, November twenty-sixth "
        "are nine a.m. and ten a.m.", "Which time would suit you?",
    ]
