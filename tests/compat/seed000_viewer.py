"""Seed 000's viewer, as the post has it: Tornado, int(message), the Beta posterior.

Run as ``python seed000_viewer.py <ws url>``; the URL is the only change from the post.
"""

import sys

import tornado.ioloop
import tornado.websocket


class WebSocketClient:
    def __init__(self, io_loop, url):
        self.connection = None
        self.io_loop = io_loop
        self.url = url
        self.num_successes = 0
        self.num_trials = 0

    def start(self):
        self.connect_and_read()

    def stop(self):
        self.io_loop.stop()

    def connect_and_read(self):
        print("Reading...", flush=True)
        tornado.websocket.websocket_connect(
            url=self.url,
            callback=self.maybe_retry_connection,
            on_message_callback=self.on_message,
            ping_interval=10,
            ping_timeout=30,
        )

    def maybe_retry_connection(self, future) -> None:
        try:
            self.connection = future.result()
        except Exception:
            print("Could not reconnect, retrying in 3 seconds...", flush=True)
            self.io_loop.call_later(3, self.connect_and_read)

    def on_message(self, message):
        if message is None:
            print("Disconnected, reconnecting...", flush=True)
            self.connect_and_read()
            return

        message = int(message)
        self.num_successes += message
        self.num_trials += 1

        alpha = 2 + self.num_successes
        beta = 2 + self.num_trials - self.num_successes
        mean = self.num_successes / self.num_trials
        print(f"α = {alpha}; β = {beta}; mean = {mean}", flush=True)


def main():
    io_loop = tornado.ioloop.IOLoop.current()
    client = WebSocketClient(io_loop, sys.argv[1])
    io_loop.add_callback(client.start)
    io_loop.start()


if __name__ == "__main__":
    main()
