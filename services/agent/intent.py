"""What the offline model reads in a customer's words: greetings, product asks, quantities, addresses (pure)."""

import re
from dataclasses import dataclass

NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "a pair of": 2,
}  # fmt: skip
HUMAN_WORDS = ("person", "human", "someone", "somebody", "real agent", "representative", "operator", "staff")
GREETINGS = ("hi", "hello", "hey", "hola", "good morning", "good afternoon", "good evening")
BUY_WORDS = ("want", "like", "buy", "take", "order", "add", "get me", "i'll have", "give me")
PAY_WORDS = ("pay", "checkout", "check out", "payment", "link")
# fmt: off
STOPWORDS = frozenset({
    "a", "an", "the", "of", "and", "or", "to", "for", "i", "me", "my", "you", "your", "we",
    "is", "are", "it", "do", "does", "how", "much", "what", "this", "that", "please",
})
# fmt: on


@dataclass(frozen=True)
class ProductRef:
    sku: str
    name: str
    words: frozenset[str]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def wants_person(text: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in HUMAN_WORDS)


def is_greeting(text: str) -> bool:
    tokens = words(text)
    joined = " ".join(tokens)
    return bool(tokens) and len(tokens) <= 4 and any(joined.startswith(g) for g in GREETINGS)


def wants_to_pay(text: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in PAY_WORDS)


def wants_to_buy(text: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in BUY_WORDS)


def address_in(text: str) -> str | None:
    match = re.search(r"\b(?:my address is|address:|ship to|deliver to)[\s:]*(.+)", text, flags=re.IGNORECASE)
    if not match:
        return None
    address = match.group(1).strip().rstrip(".")
    return address[:500] or None


def quantity_in(text: str) -> int:
    lowered = text.lower()
    # Up to nine digits so the clamp below is reachable ("5000" is 1000, not 1) and int() stays small.
    digits = re.search(r"\b(\d{1,9})\b", lowered)
    if digits:
        return max(1, min(1000, int(digits.group(1))))
    for phrase, value in sorted(NUMBER_WORDS.items(), key=lambda kv: -len(kv[0])):
        if re.search(rf"\b{phrase}\b", lowered):
            return value
    return 1


def best_product(text: str, products: list[ProductRef]) -> ProductRef | None:
    """The product whose name shares the most meaningful words with the text (ties: first listed)."""
    asked = {w.rstrip("s") for w in words(text) if w not in STOPWORDS}
    best: ProductRef | None = None
    best_score = 0
    for product in products:
        score = len(asked & {w.rstrip("s") for w in product.words})
        if score > best_score:
            best, best_score = product, score
    return best


COMPLAINT_WORDS = (
    "refund",
    "money back",
    "complaint",
    "complain",
    "broken",
    "damaged",
    "never arrived",
    "didn't arrive",
    "did not arrive",
    "scam",
    "terrible",
    "awful",
    "furious",
    "angry",
    "chargeback",
)


def is_complaint(text: str) -> bool:
    """Complaints and refund requests go to a person, whatever the model would say."""
    lowered = text.lower()
    return any(re.search(rf"\b{re.escape(w)}\b", lowered) for w in COMPLAINT_WORDS)
