"""Is what the small LLM wrote backed by what the agent knows? If not, it is not spoken.

The CPU model (SmolLM2-135M) invents: a persona ("I'm Sarah O'Neill"), services ("you can book a
room for 24 hours"), contradictions. A free turn may only say what the agent file supports:
every number and name in a sentence must appear in the agent's own text (persona, knowledge,
flows, hours, intents), and nearly every content word must. A sentence that fails is withheld
and the caller hears what the agent can do instead (``capabilities``), or is offered a person.
"""

from __future__ import annotations

import re

from .definition import AgentDef, NodeKind

# Words any polite answer may use without the agent file saying them.
COMMON = set("""
a about after again all also am an and any anything are as ask at be because been being best but by call calling
can could day do does doing don't else for from get glad go good great happy have help here hi hello how i i'd
i'll i'm if in is it it's just kind know let like look me more much my need no not now of oh ok okay on one or
other our out please pleasure question questions right say see so some sorry sure thank thanks that that's the
their them then there these they thing things this to today too us very want was way we we'll we're well what
when where which will with would yes you you're your yourself assist assistance welcome happen someone something
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[:.]\d+)?")
MAX_UNKNOWN_SHARE = 0.25  # content words not in the agent's text, of all content words in a sentence


def _stem(word: str) -> str:
    w = word.lower().strip("'-")
    for suffix in ("'s", "ies", "es", "s", "ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def agent_text(agent: AgentDef) -> str:
    """Everything the agent file says: the ground a free answer must stand on."""
    parts = [agent.persona, agent.greeting, agent.goodbye, agent.description, agent.name.replace("-", " ")]
    for k in agent.knowledge:
        parts += [k.answer, *k.questions, k.id.replace("_", " ")]
    for i in agent.intents:
        parts += [i.description, *i.examples, i.name.replace("_", " ")]
    for n in agent.flow.values():
        parts += [n.say, n.say_ok, n.say_error, *n.prompts.values()]
    parts += [t.description for t in agent.transfer_targets]
    if agent.hours.known:
        parts.append(agent.hours.describe())
    return " ".join(p for p in parts if p)


class Grounding:
    def __init__(self, agent: AgentDef):
        text = agent_text(agent)
        self.vocab = {_stem(w) for w in _WORD.findall(text)}
        self.numbers = {w for w in _WORD.findall(text) if w[0].isdigit()}

    def unsupported(self, sentence: str) -> list[str]:
        """The words of ``sentence`` the agent file does not back: numbers and names always,
        other content words once they are more than a quarter of them."""
        words = _WORD.findall(sentence)
        bad_numbers = [w for w in words if w[0].isdigit() and w not in self.numbers]
        names = [w for i, w in enumerate(words) if i and w[0].isupper() and w.lower() not in COMMON
                 and _stem(w) not in self.vocab]
        content = [w for w in words if not w[0].isdigit() and w.lower() not in COMMON]
        unknown = [w for w in content if _stem(w) not in self.vocab]
        if content and len(unknown) / len(content) <= MAX_UNKNOWN_SHARE:
            unknown = []
        return list(dict.fromkeys(bad_numbers + names + unknown))

    def grounded(self, sentence: str) -> bool:
        return not self.unsupported(sentence)


def capabilities(agent: AgentDef) -> str:
    """What the agent can do, said when a free answer is withheld."""
    tasks = [i.description for i in agent.intents if i.node and i.description
             and agent.flow.get(i.node) is not None and agent.flow[i.node].kind is not NodeKind.TRANSFER]
    topics = [k.id.replace("_", " ") for k in agent.knowledge if k.id not in ("hello",)]
    parts = []
    if tasks:
        parts.append("I can " + (", ".join(tasks[:-1]) + f" or {tasks[-1]}" if len(tasks) > 1 else tasks[0]))
    if topics:
        about = ", ".join(topics[:-1]) + f" and {topics[-1]}" if len(topics) > 1 else topics[0]
        parts.append(f"{'or' if parts else 'I can'} answer questions about our {about}")
    text = "I'm sorry, I can't help with that. " + (" ".join(parts) + "." if parts else "")
    target = agent.target(agent.escalation.target)
    if target is not None:
        text += f" Or I can put you through to {target.description or 'a person'}."
    return text.strip()
