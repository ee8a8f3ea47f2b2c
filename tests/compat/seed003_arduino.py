"""Seed 003's clock sketch (its sketch.py ``clock`` and arduino.py's click command),
pointed at Streamsite's publish socket: it sends ``str(payload)`` for each tick and
prints the acknowledgement it ``recv()``s.

Only the URL changed: the post's ``'ws://{socket}:{port}/datafeed'`` takes a path
(``--path /ws/feeds/<uuid>/publish/?token=<token>``) where it had ``/datafeed``.
The post's other sketches have no client to point at Streamsite: its IOPin is the
websocket *server* the clock talks to (Streamsite's publish socket takes that role,
answering each tick with an ack), and its buzzer comes in part 2, not in the post.

Run as ``python seed003_arduino.py clock -s 127.0.0.1 -p <port> --path <path> -t 5 -d 0``.
"""

import asyncio

import click
import websockets


async def clock(socket, port, path, tacks=3, delay=1):
    # the path "datafeed" in this uri will be a parameter available in the other side
    uri = f"ws://{socket}:{port}{path}"

    # manage asynchronously the connection
    async with websockets.connect(uri) as ws:
        for payload in range(tacks):
            print(f"[ clock ] > {payload}", flush=True)
            # send payload and wait for acknowledgement
            await ws.send(str(payload))
            print(f"[ clock ] < {await ws.recv()}", flush=True)
            await asyncio.sleep(delay)  # the clock's interval (arduino.py's --delay)


@click.command()
@click.argument("sketch")
@click.option("-s", "--socket", default="localhost", help="Websocket to bind to")
@click.option("-p", "--port", default=8765, help="Websocket port to bind to")
@click.option("--path", default="/datafeed", help="Websocket path (the URL's change)")
@click.option("-t", "--tacks", default=5, help="Number of clock ticks")
@click.option("-d", "--delay", default=1.0, help="Clock intervals")
def main(sketch, **flags):
    if sketch == "clock":
        # delegate the asynchronous execution to the event loop
        asyncio.run(clock(**flags))
    else:
        print("unknown sketch, please choose clock, iopin or buzzer")


if __name__ == "__main__":
    main()
