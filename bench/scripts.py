"""What the simulated shoppers type: a fixed, seeded mix for our assistant, the happy path for the baseline."""
import random
from typing import List

# The kinds of turns a shop chat sees, with how often each appears in our mix.
SEARCHES = (
    "show me red sneakers under $80", "black hoodie in xl", "best rated headphones",
    "cheapest running shoes", "wool sweaters for women", "leather jackets for men",
    "blue jeans between $40 and $70", "any linen t-shirts?", "kids pyjamas under 25",
    "smartwatch from circuit & co", "i need a backpack", "white sneakers size 42",
)
PRODUCT_QUESTIONS = (
    "tell me more about the first one", "what sizes does the second one come in",
    "is the first one in stock", "what do people say about the second one", "show more",
)
ORDER_QUESTIONS = ("where is my order", "track my order please", "i want to return something")
FAQ_QUESTIONS = (
    "how long does delivery take", "what are your shipping options", "which payment methods do you accept",
    "what is your return policy", "how can i contact you",
)
SMALL_TALK = ("hi", "thanks", "help")
MIX = ((SEARCHES, 5), (PRODUCT_QUESTIONS, 3), (ORDER_QUESTIONS, 1), (FAQ_QUESTIONS, 2), (SMALL_TALK, 1))

# The template bot's own happy path (`rasa init`'s stories): greet, mood, goodbye, bot challenge.
BASELINE_TURNS = (
    "hello", "I am feeling great", "hi there", "I am sad", "yes it helped",
    "are you a bot?", "good morning", "perfect", "bye",
)


def shop_turns(count: int, seed: int) -> List[str]:
    """`count` messages of our mix; a search always comes before questions about 'the first one'."""
    rng = random.Random(seed)
    groups = [group for group, _ in MIX]
    weights = [weight for _, weight in MIX]
    turns: List[str] = [rng.choice(SEARCHES)]
    while len(turns) < count:
        turns.append(rng.choice(rng.choices(groups, weights)[0]))
    return turns


def baseline_turns(count: int) -> List[str]:
    return [BASELINE_TURNS[index % len(BASELINE_TURNS)] for index in range(count)]
