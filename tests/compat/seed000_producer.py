"""Seed 000's producer side, pointed at Streamsite's publish socket: it sends
``str(random_bernoulli.sample())`` every 100 ms, as the post's server broadcast it.

Run as ``python seed000_producer.py <ws url with ?token=> <count>``.
"""

import random
import sys

import tornado.ioloop
import tornado.websocket


class RandomBernoulli:
    def __init__(self):
        self.p = 0.72
        print(f"True p = {self.p}", flush=True)

    def sample(self):
        return int(random.uniform(0, 1) <= self.p)


async def main(url, count):
    connection = await tornado.websocket.websocket_connect(url)
    random_bernoulli = RandomBernoulli()
    for _ in range(count):
        await connection.write_message(str(random_bernoulli.sample()))
        print(await connection.read_message(), flush=True)  # the acknowledgement
        await tornado.gen.sleep(0.1)
    connection.close()


if __name__ == "__main__":
    import tornado.gen

    tornado.ioloop.IOLoop.current().run_sync(lambda: main(sys.argv[1], int(sys.argv[2])))
