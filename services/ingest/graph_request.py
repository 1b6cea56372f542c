"""Send API request bodies for one outbound message, per channel (pure: no I/O).

Shapes follow PROTOCOLS A.7: Messenger and Instagram (Page token) post to `/me/messages` with
`recipient`, `messaging_type` and `message`; WhatsApp posts to `/{phone_number_id}/messages`
with `messaging_product`, `to` and a typed body. A message can need more than one request:
Messenger and Instagram cannot put text on an image, so the image goes first and the text
(with any quick replies, so the buttons sit under the last bubble) second.
"""

from dataclasses import dataclass

from schemas.channel import OutboundMessage, QuickReply, WhatsAppTemplate
from schemas.envelope import Channel

Body = dict[str, object]


@dataclass(frozen=True)
class GraphRequest:
    """One POST to the Send API; `kind` is what the message log and the sandbox call it."""

    kind: str  # text, quick_replies, image, interactive, template
    body: Body


def build_requests(message: OutboundMessage, *, tag: str | None = None) -> list[GraphRequest]:
    """The requests, in order, that deliver `message`; `tag` is a Messenger/Instagram message tag."""
    if message.channel is Channel.WHATSAPP:
        return [_whatsapp(message)]
    return _messaging(message, tag)


def with_send_id(request: GraphRequest, channel: Channel, send_id: str) -> GraphRequest:
    """The request naming the send it belongs to, in the field Meta hands back: `message.metadata` comes back on
    the Messenger/Instagram echo, `biz_opaque_callback_data` on WhatsApp's statuses. A copy of what reached
    the channel can then be matched to its `ingest_sends` row."""
    if channel is Channel.WHATSAPP:
        return GraphRequest(request.kind, {**request.body, "biz_opaque_callback_data": send_id})
    message = request.body.get("message")
    if not isinstance(message, dict):
        return request
    return GraphRequest(request.kind, {**request.body, "message": {**message, "metadata": send_id}})


def _whatsapp(message: OutboundMessage) -> GraphRequest:
    head: Body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": message.customer_id}
    if message.template is not None:
        return GraphRequest("template", {**head, "type": "template", "template": _template(message.template)})
    if message.quick_replies:
        interactive: Body = {
            "type": "button",
            "body": {"text": message.text},
            "action": {"buttons": [_button(reply) for reply in message.quick_replies]},
        }
        if message.image_url:
            interactive = {"header": {"type": "image", "image": {"link": message.image_url}}, **interactive}
        return GraphRequest("interactive", {**head, "type": "interactive", "interactive": interactive})
    if message.image_url:
        image: Body = {"link": message.image_url}
        if message.text:
            image["caption"] = message.text
        return GraphRequest("image", {**head, "type": "image", "image": image})
    return GraphRequest("text", {**head, "type": "text", "text": {"preview_url": False, "body": message.text}})


def _template(template: WhatsAppTemplate) -> Body:
    body: Body = {"name": template.name, "language": {"code": template.language}}
    if template.body_parameters:
        parameters = [{"type": "text", "text": value} for value in template.body_parameters]
        body["components"] = [{"type": "body", "parameters": parameters}]
    return body


def _button(reply: QuickReply) -> Body:
    return {"type": "reply", "reply": {"id": reply.payload, "title": reply.title}}


def _messaging(message: OutboundMessage, tag: str | None) -> list[GraphRequest]:
    head: Body = {"recipient": {"id": message.customer_id}}
    # RESPONSE inside the window; a tag (HUMAN_AGENT) is what makes a send outside it legal.
    head.update({"messaging_type": "MESSAGE_TAG", "tag": tag} if tag else {"messaging_type": "RESPONSE"})
    quick_replies = [
        {"content_type": "text", "title": reply.title, "payload": reply.payload} for reply in message.quick_replies
    ]
    requests: list[GraphRequest] = []
    if message.image_url:
        image: Body = {"attachment": {"type": "image", "payload": {"url": message.image_url}}}
        requests.append(GraphRequest("image", {**head, "message": image}))
    if message.text or not requests:
        text: Body = {"text": message.text}
        if quick_replies:
            text["quick_replies"] = quick_replies
        requests.append(GraphRequest("quick_replies" if quick_replies else "text", {**head, "message": text}))
    return requests
