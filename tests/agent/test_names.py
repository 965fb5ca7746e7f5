"""The name lexicon that picks among the recogniser's readings of a caller's name."""

from appliance.agent.understanding.names import likeliest, ranks, score


def test_the_census_lists_are_loaded():
    table = ranks()
    assert len(table) > 80_000 and table["SMITH"] == 1 and table["JAMES"] == 1


def test_a_reading_of_common_names_beats_a_near_miss():
    assert likeliest(["Lisa Johns", "Lisa Jones"]) == "Lisa Jones"
    assert likeliest(["Priyapadel", "Priya Patel"]) == "Priya Patel"
    assert likeliest(["Anley", "Anne Lee"]) == "Anne Lee"


def test_the_recognisers_order_wins_a_tie_and_nothing_is_invented():
    assert likeliest(["Zyxw", "Qqqq"]) == "Zyxw"
    assert likeliest([]) == ""
    assert score("...") == float("inf")
