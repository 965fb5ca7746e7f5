"""`bench endpoint`'s short CI version: real Piper speech through the phone line and the real
endpointer; the silence endpoint's known behaviour is the check that the bench measures."""

from appliance.bench import endpoint
from appliance.config.loader import parse


def test_the_silence_endpoint_cuts_every_long_hesitation_and_waits_its_silence(models_dir):
    config = parse(f'[paths]\nmodels_dir = "{models_dir}"\n[vad]\nend_silence_ms = 240\n')
    result = endpoint.run(config, limit=4)
    silence, model = result["modes"]["silence"], result["modes"]["turn-model"]
    assert silence["hesitations"] == model["hesitations"] == 4 and silence["complete"] == 4
    assert silence["false_cutoffs"] == 4  # every pause here is longer than 240 ms
    assert silence["no_endpoint"] == 0 and 200 <= silence["wait_after_end_ms"]["p50"] <= 400
    # The turn model ends a turn at its 100 ms pause or waits at most its bound: never longer.
    assert model["no_endpoint"] == 0 and model["wait_after_end_ms"]["max"] <= config.vad.turn_max_wait_ms + 100
    # agentd's word check can only save a cut turn ("My name is" is held for the rest), never cut one.
    for m in (silence, model):
        words = m["with_words"]
        assert words["false_cutoffs"] <= m["false_cutoffs"] and len(words["cut_off"]) == words["false_cutoffs"]
        assert words["wait_after_end_ms"]["p50"] >= m["wait_after_end_ms"]["p50"]
    assert "false cut-offs" in endpoint.render(result) and "+ words" in endpoint.render(result)


def test_a_hesitation_is_cut_from_one_sentence_at_its_comma():
    """The words before the pause are said as the start of a longer sentence (not as a sentence
    of their own), and the split lands in the comma's gap: both parts are speech, neither empty."""
    first, rest = endpoint._opened("My name is,", "Sarah Miller.", "plain")
    alone = endpoint._voice("My name is,", "plain")
    assert 0.5 * len(alone) < len(first) < 1.5 * len(alone) and len(rest) > 0.3 * 16000
    assert first[-160:].astype(float).std() < 2000  # it ends in the quiet of the comma, not mid-word
