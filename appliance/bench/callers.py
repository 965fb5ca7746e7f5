"""Callers with a purpose, for the demo and the end-to-end tests: each decides what to say
from what the agent just said, so a misheard turn is simply answered again when the agent
re-asks, as a person would, instead of the script drifting out of step."""

from __future__ import annotations


# What a person says when the same answer was not understood: the same thing another way.
REPHRASED = {
    "At 10 am, please.": ("Ten in the morning, please.", "At ten o'clock in the morning."),
    "Next Tuesday, please.": ("On Tuesday next week.", "Tuesday, please."),
    "My name is John Smith.": ("John Smith.", "The name is John Smith."),
}


class BookingCaller:
    """Asks the Saturday opening hours (optionally), then books John Smith next Tuesday at 10."""

    def __init__(self, ask_hours: bool = True):
        self.todo = ["What time are you open on Saturday?"] if ask_hours else []
        self.todo.append("I would like to book an appointment.")
        self.last = ""
        self.confirmed = False

    def __call__(self, agent: str) -> str | None:
        text = agent.lower()
        if "goodbye" in text:
            return None
        if "was that" in text or "did you mean" in text:  # the agent reads back what it heard
            return self._say("Yes." if "ten a.m" in text or "10" in text else "No.")
        if "which part" in text:
            return self._say("The time.")
        if "shall i book" in text:
            # Say no when the agent got the time wrong: the flow asks the day and time again.
            return self._say("Yes please." if "10" in text or "ten" in text else "No, that's not right.")
        if "name" in text:
            return self._say("My name is John Smith.")
        if "what day" in text or "which other day" in text or "day would you" in text:
            return self._say("Next Tuesday, please.")
        if "what time" in text:
            return self._say("At 10 am, please.")
        if "you're booked" in text:
            self.confirmed = True
        if self.todo and ("help" in text or "anything else" in text or "saturday" in text):
            return self._say(self.todo.pop(0))
        if "anything else" in text:
            return self._say("No, that's all, thank you. Goodbye.")
        if "one moment" in text or "just a moment" in text:
            return ""
        return self.last  # not understood: say it again (an aside, a filler: the question follows)

    def _say(self, sentence: str) -> str:
        """``sentence``; asked for the same answer again, the next way of saying it."""
        ways = (sentence, *REPHRASED.get(sentence, ()))
        if self.last in ways:
            sentence = ways[(ways.index(self.last) + 1) % len(ways)]
        self.last = sentence
        return sentence
