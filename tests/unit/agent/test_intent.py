"""What the offline model reads in a customer's words."""

import pytest

from services.agent import intent
from services.agent.intent import ProductRef

TSHIRT = ProductRef("TS-1", "T-shirt", frozenset(intent.words("T-shirt cotton tee")))
BEANS = ProductRef("ESP-1", "Espresso beans", frozenset(intent.words("Espresso beans dark roast")))
MUG = ProductRef("MUG-1", "Coffee mug", frozenset(intent.words("Coffee mug ceramic")))
PRODUCTS = [TSHIRT, BEANS, MUG]


@pytest.mark.parametrize("text", ["hi", "Hello!", "hey there", "Good morning :)", "hola, buenas"])
def test_short_salutations_are_greetings(text: str) -> None:
    assert intent.is_greeting(text)


@pytest.mark.parametrize("text", ["", "?!", "hello, I would like to order two mugs please", "what do you sell"])
def test_long_messages_empty_text_and_questions_are_not_greetings(text: str) -> None:
    assert not intent.is_greeting(text)


@pytest.mark.parametrize(
    "text", ["can I talk to a person", "I want a HUMAN", "is there someone there?", "get me a real agent"]
)
def test_asks_for_a_person_are_recognised(text: str) -> None:
    assert intent.wants_person(text)


def test_an_ordinary_product_question_does_not_ask_for_a_person() -> None:
    assert not intent.wants_person("how much is the mug")


@pytest.mark.parametrize(
    ("text", "quantity"),
    [
        ("I want two mugs", 2),
        ("a couple of t-shirts please", 2),
        ("a pair of mugs", 2),
        ("give me ten", 10),
        ("I want 3 mugs", 3),
        ("3", 3),
        ("one mug", 1),
        ("a mug", 1),
        ("mugs", 1),
        ("0 mugs", 1),
        ("I want 1000", 1000),
        ("I want 5000 mugs", 1000),
        ("I want 1500", 1000),
    ],
)
def test_quantity_from_words_or_digits(text: str, quantity: int) -> None:
    assert intent.quantity_in(text) == quantity


def test_digits_win_over_number_words() -> None:
    assert intent.quantity_in("two boxes of 6") == 6


def test_number_words_match_whole_words_only() -> None:
    assert intent.quantity_in("someone tonight") == 1


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("my address is 1 Main St", "1 Main St"),
        ("My address is 1 Main St.", "1 Main St"),
        ("Ship to: 22 Baker Street, London", "22 Baker Street, London"),
        ("address: Calle 5 #10, CDMX", "Calle 5 #10, CDMX"),
        ("please deliver to 9 Elm Rd", "9 Elm Rd"),
    ],
)
def test_address_after_a_marker_phrase_is_extracted(text: str, address: str) -> None:
    assert intent.address_in(text) == address


def test_no_marker_means_no_address() -> None:
    assert intent.address_in("I live near the park") is None
    assert intent.address_in("my address is ...") is None


def test_a_long_address_is_cut_to_500_characters() -> None:
    found = intent.address_in("my address is " + "x" * 900)
    assert found is not None and len(found) == 500


def test_plural_t_shirts_match_the_t_shirt() -> None:
    assert intent.best_product("I want two t-shirts", PRODUCTS) is TSHIRT


def test_the_product_sharing_most_words_wins() -> None:
    assert intent.best_product("the dark roast espresso", PRODUCTS) is BEANS
    assert intent.best_product("a ceramic coffee mug", PRODUCTS) is MUG


def test_ties_go_to_the_first_listed_product() -> None:
    first = ProductRef("A", "Blue mug", frozenset({"blue", "mug"}))
    second = ProductRef("B", "Red mug", frozenset({"red", "mug"}))
    assert intent.best_product("a mug", [first, second]) is first


def test_stopwords_alone_match_no_product() -> None:
    product = ProductRef("X", "The thing", frozenset({"the", "thing"}))
    assert intent.best_product("what is the price", [product]) is None
    assert intent.best_product("anything", []) is None


@pytest.mark.parametrize("text", ["how do I pay", "send me the payment link", "checkout", "can I check out"])
def test_asks_to_pay_are_recognised(text: str) -> None:
    assert intent.wants_to_pay(text)


@pytest.mark.parametrize(
    "text", ["I want two mugs", "I'd like a mug", "add a t-shirt", "I'll have the beans", "give me one"]
)
def test_asks_to_buy_are_recognised(text: str) -> None:
    assert intent.wants_to_buy(text)


def test_a_price_question_is_neither_buying_nor_paying() -> None:
    assert not intent.wants_to_buy("how much is the mug?")
    assert not intent.wants_to_pay("how much is the mug?")
