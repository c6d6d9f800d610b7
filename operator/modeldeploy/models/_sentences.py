"""English sentences for measuring a sentence encoder, generated from templates: no download, no RNG.

Why this exists: compressing an embedding model is judged by how close the compressed model's embeddings
stay to the original's (cosine) on realistic inputs, and the dataset has to exist offline on every test
machine. Templates over a dozen topics give sentences of varied length (6 to 27 words), vocabulary
and form (statements, questions, negations, compound sentences); slots are filled by index arithmetic
with strides coprime to each list's length, so the set is the same on every machine and Python version.
"""

from __future__ import annotations

_SUBJECTS = ["The engineer", "My neighbour", "A small child", "The committee", "Our team", "The old farmer",
             "A tourist from Spain", "The doctor", "Her brother", "The new manager", "A group of students",
             "The pilot", "The librarian", "My grandmother", "The startup"]
_VERBS = ["repaired", "painted", "sold", "described", "ignored", "photographed", "delivered", "borrowed",
          "cleaned", "designed", "cancelled", "reviewed", "moved", "praised", "measured", "lost", "found"]
_OBJECTS = ["the broken bicycle", "an expensive car", "the quarterly report", "a wooden table",
            "the garden fence", "a cheap laptop", "the train schedule", "a birthday cake", "the kitchen sink",
            "a blue umbrella", "the contract", "an old piano", "the website", "a pair of boots"]
_PLACES = ["in the city centre", "near the river", "at the airport", "behind the school", "on the island",
           "in a quiet village", "at the stadium", "inside the museum", "on the mountain", "at the harbour",
           "in the hospital", "at the market"]
_TIMES = ["yesterday", "this morning", "last winter", "after lunch", "on Sunday", "before the storm",
          "late at night", "two weeks ago", "during the holidays", "every Friday", "at dawn"]
_WEATHER = ["It is raining heavily", "The sun is shining", "A cold wind is blowing", "Snow is falling",
            "The sky is clear", "Thick fog covers the valley", "It is hot and humid", "A thunderstorm is coming"]
_FEELINGS = ["happy", "worried", "tired", "excited", "confused", "proud", "nervous", "relaxed", "angry",
             "grateful", "bored"]
_TOPICS = ["the price of electricity", "climate change", "the football final", "a new vaccine",
           "the elections", "interest rates", "the music festival", "electric cars", "remote work",
           "the housing market", "artificial intelligence", "the school budget", "a volcanic eruption"]
_FOODS = ["tomato soup", "fresh bread", "grilled fish", "a spicy curry", "chocolate cake", "green salad",
          "pancakes with honey", "roast chicken", "vegetable noodles", "apple pie"]
_TECH = ["the database", "the web server", "the mobile app", "the login page", "the build pipeline",
         "the payment service", "the search index", "the backup job", "the network switch", "the printer"]
_PROBLEMS = ["keeps crashing", "is very slow", "returns the wrong results", "stopped responding",
             "uses too much memory", "fails every night", "shows a blank screen", "loses data after a restart"]
_ANIMALS = ["The dog", "A black cat", "The horse", "A tiny bird", "The fox", "An old turtle", "The cow",
            "A young deer"]
_ACTIONS = ["slept under the tree", "chased the ball", "ran across the field", "hid in the barn",
            "drank from the pond", "watched the children", "jumped over the wall", "waited by the door"]

_TEMPLATES = [
    lambda i: f"{_pick(_SUBJECTS, i, 1)} {_pick(_VERBS, i, 3)} {_pick(_OBJECTS, i, 5)} {_pick(_TIMES, i, 2)}.",
    lambda i: f"{_pick(_SUBJECTS, i, 4)} {_pick(_VERBS, i, 7)} {_pick(_OBJECTS, i, 3)} {_pick(_PLACES, i, 5)} "
              f"{_pick(_TIMES, i, 3)}, and nobody noticed until much later.",
    lambda i: f"{_pick(_WEATHER, i, 3)} {_pick(_PLACES, i, 7)}.",
    lambda i: f"{_pick(_WEATHER, i, 5)}, so {_pick(_SUBJECTS, i, 2).lower()} stayed at home and felt "
              f"{_pick(_FEELINGS, i, 3)}.",
    lambda i: f"Why did {_pick(_SUBJECTS, i, 6).lower()} decide that {_pick(_OBJECTS, i, 7)} had to be "
              f"{_pick(_VERBS, i, 5)} {_pick(_TIMES, i, 4)}?",
    lambda i: f"Everyone is talking about {_pick(_TOPICS, i, 3)}.",
    lambda i: f"The newspaper published a long article about {_pick(_TOPICS, i, 5)}, but most readers only "
              f"looked at the headline and the photograph {_pick(_PLACES, i, 3)}.",
    lambda i: f"I am not sure that {_pick(_TOPICS, i, 7)} matters more than {_pick(_TOPICS, i + 1, 7)}.",
    lambda i: f"For dinner we had {_pick(_FOODS, i, 3)} and {_pick(_FOODS, i + 3, 7)}.",
    lambda i: f"Could you tell me where I can buy {_pick(_FOODS, i, 9)} {_pick(_PLACES, i, 5)}?",
    lambda i: f"After the update, {_pick(_TECH, i, 3)} {_pick(_PROBLEMS, i, 5)}.",
    lambda i: f"Since {_pick(_TIMES, i, 5)}, {_pick(_TECH, i, 7)} {_pick(_PROBLEMS, i, 3)}, and the on-call "
              f"engineer thinks a configuration change to {_pick(_TECH, i + 2, 3)} is the cause.",
    lambda i: f"{_pick(_ANIMALS, i, 3)} {_pick(_ACTIONS, i, 5)}.",
    lambda i: f"{_pick(_ANIMALS, i, 5)} {_pick(_ACTIONS, i, 3)} while {_pick(_SUBJECTS, i, 5).lower()} was "
              f"{_pick(_FEELINGS, i, 7)} about {_pick(_TOPICS, i, 9)}.",
    lambda i: f"She was {_pick(_FEELINGS, i, 5)} because {_pick(_SUBJECTS, i, 8).lower()} never "
              f"{_pick(_VERBS, i, 9)} {_pick(_OBJECTS, i, 11)}.",
    lambda i: f"Is it true that {_pick(_WEATHER, i, 7).lower()} {_pick(_PLACES, i, 11)}?",
]


#: More than any test needs; ``sentences(MAX_COUNT)`` is checked to terminate with distinct sentences.
MAX_COUNT = 5000


def _pick(items: list[str], i: int, stride: int) -> str:
    return items[(i * stride + i // len(items)) % len(items)]


def sentences(count: int = 320) -> list[str]:
    """``count`` distinct sentences (at most ``MAX_COUNT``), cycling through the templates; the same list on
    every run."""
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 0 and {MAX_COUNT}, not {count}")
    out, seen, i = [], set(), 0
    while len(out) < count:
        s = _TEMPLATES[i % len(_TEMPLATES)](i // len(_TEMPLATES))
        i += 1
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
