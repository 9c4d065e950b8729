"""One chat's running state, advanced along the exact path training takes.

Training turns a conversation t0, t1, t2, t3 into the exchanges (t0 -> t1), (t1 -> t2),
(t2 -> t3), the state carried through all of them. When the user says t0 and the bot
replies t1, then the user says t2, the exchange (t1 -> t2) has a known reply: `say`
observes it (the encoder reads the bot's last reply, the decoder consumes the user's
turn) before decoding t3. So the state a reply starts from is the one training would
have at that point, and a reply depends on everything said before.
"""

from __future__ import annotations

from chatbot.decode.responder import ReplyInfo, Responder, State
from chatbot.decode.settings import DecodeSettings


class Conversation:
    """A conversation with a Responder: `say` a turn, get the reply; `reset` forgets."""

    def __init__(self, responder: Responder, settings: DecodeSettings | None = None) -> None:
        self.responder = responder
        self.settings = settings
        self.state: State = responder.zero_state()
        self.last_reply: tuple[int, ...] | None = None  # the bot's last turn, as ids

    def say(self, text: str) -> tuple[str, ReplyInfo]:
        """The bot's reply to the user's `text`; the state moves past both turns."""
        r = self.responder
        turn = r.encode(text)
        if self.last_reply is not None:
            # Token ids, not text: decoding and encoding again need not give the same ids.
            self.state = r.observe_ids([self.last_reply], [r.target_in(text)], [self.state])[0]
        reply, self.state, info = r.reply_ids([turn], [self.state], self.settings)[0]
        self.last_reply = info.ids
        return reply, info

    def reset(self) -> None:
        """Start afresh: the next turn is read as the first of a new conversation."""
        self.state = self.responder.zero_state()
        self.last_reply = None
