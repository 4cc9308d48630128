"""``depends(url=...)`` without ``on=``: ``Remote`` is served on its own; ``Caller``
knows only its URL (env REMOTE_URL) and calls it through the APIs of its /schema.json."""
import os
from pathlib import Path

import bentohost
from bentohost.exceptions import InvalidArgument, NotFound
from PIL import Image


@bentohost.service
class Remote:
    @bentohost.api
    def add(self, a: int, b: int = 10) -> int:
        return a + b

    @bentohost.api
    async def hello(self, name: str) -> str:
        return f"hello {name}"

    @bentohost.api
    def describe(self, tags: list[str], scale: float = 1.0) -> dict:
        return {"tags": tags, "scale": scale}

    @bentohost.api
    def shout(self, text: str, /) -> str:
        return text.upper()

    @bentohost.api
    def report(self, ctx: bentohost.Context) -> Path:
        path = Path(ctx.temp_dir) / "report.txt"
        path.write_text("all good\n")
        return path

    @bentohost.api
    def square(self, size: int) -> Image.Image:
        return Image.new("RGB", (size, size), (10, 20, 30))

    @bentohost.api
    def fail(self, kind: str) -> str:
        if kind == "invalid":
            raise InvalidArgument("kind must not be invalid")
        raise NotFound("nothing here")


@bentohost.service
class Caller:
    remote = bentohost.depends(url=os.environ.get("REMOTE_URL", "http://127.0.0.1:9"))

    @bentohost.api
    def add(self, a: int) -> int:
        return self.remote.add(a=a) + self.remote.add(a, 1)  # keyword, then positional

    @bentohost.api
    async def ahello(self, name: str) -> str:
        return await self.remote.hello(name=name)

    @bentohost.api
    def sync_hello(self, name: str) -> str:
        return self.remote.to_sync.hello(name=name)

    @bentohost.api
    async def async_add(self, a: int) -> int:
        return await self.remote.to_async.add(a=a, b=1)

    @bentohost.api
    def describe(self) -> dict:
        return self.remote.describe(tags=["x", "y"])

    @bentohost.api
    def shout(self, text: str) -> str:
        return self.remote.shout(text)

    @bentohost.api
    def report(self) -> str:
        path = self.remote.report()
        return f"{path.name}:{path.read_text()}"

    @bentohost.api
    def square(self) -> list:
        img = self.remote.square(size=3)
        return [img.size[0], img.getpixel((0, 0))[2]]

    @bentohost.api
    def fail(self, kind: str) -> str:
        return self.remote.fail(kind=kind)

    @bentohost.api
    def missing(self) -> str:
        try:
            self.remote.no_such_api()
        except AttributeError as exc:
            return str(exc)
        return "no error"

    @bentohost.api
    def whoami(self) -> dict:
        return {"pid": os.getpid(), "worker_index": bentohost.server_context.worker_index}
