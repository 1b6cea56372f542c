"""What of a customer's message the AI reads as words: text and choices, and the words that came with media."""

import uuid

import pytest

from schemas.channel import Content, InboundMessage, MediaContent, StoryContent, TextContent
from services.agent.responder import customer_text
from tests.builders import inbound_text


def with_content(content: Content) -> InboundMessage:
    return inbound_text(uuid.uuid4(), "conv-1", "x").model_copy(update={"content": content})


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (TextContent(text="how much is the mug?"), "how much is the mug?"),
        (MediaContent(kind="image", media_id="m1", caption="do you have this in blue?"), "do you have this in blue?"),
        (
            StoryContent(kind="story_reply", story_url="https://cdn.example/s/1", text="love it, price?"),
            "love it, price?",
        ),
        (MediaContent(kind="image", media_id="m1"), None),
        (MediaContent(kind="sticker", media_id="s1"), None),
        (StoryContent(kind="story_mention", story_url="https://cdn.example/s/2"), None),
    ],
    ids=["text", "captioned-photo", "story-reply", "bare-photo", "sticker", "story-mention"],
)
def test_the_words_the_customer_wrote_are_read_whatever_they_came_with(content: Content, words: str | None) -> None:
    assert customer_text(with_content(content)) == words
