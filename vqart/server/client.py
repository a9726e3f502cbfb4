"""A python-socketio client fit for vqart's replies, for scripts, tests and benchmarks talking to `vqart serve`."""

from __future__ import annotations

import socketio


class InOrderClient(socketio.Client):
    """A python-socketio client that handles incoming messages in the order they arrive.

    The stock client hands every Engine.IO message to a new thread, so the binary attachments of one reply
    (vqart sends one per frame) can be reassembled out of order or fail (python-socketio issues #436, #534),
    and each frame costs a thread start. Here messages are handled on the reading thread, in order.
    It also leaves Ctrl-C alone (the stock client replaces the process's SIGINT handler), and it drops the
    attachments of a reply cut off by its own disconnect (the stock client forgets the reply when it disconnects,
    then reads the attachments still arriving as packets and logs a traceback).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("handle_sigint", False)
        super().__init__(*args, **kwargs)

    def _handle_eio_message(self, data) -> None:
        # Socket.IO packets are text; a binary message is only ever an attachment of the pending packet.
        if isinstance(data, bytes) and self._binary_packet is None:
            return
        super()._handle_eio_message(data)

    def _engineio_client_class(self) -> type:
        base = super()._engineio_client_class()

        class InOrder(base):
            def _trigger_event(self, event, *args, run_async=False, **kwargs):
                return super()._trigger_event(event, *args, run_async=run_async and event != "message", **kwargs)

        return InOrder
