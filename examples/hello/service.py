"""The smallest service: hello-JSON. Runs unchanged under bentohost and BentoML.

    python -m bentohost serve examples/hello/service.py:Hello --port 3000
    bentoml serve examples/hello/service.py:Hello --port 3000

    curl -s localhost:3000/hello -H 'content-type: application/json' -d '{"name": "bento"}'
"""
try:
    import bentohost as bentoml
except ImportError:  # the same file under BentoML (used by bench/run.py)
    import bentoml


@bentoml.service
class Hello:
    @bentoml.api
    def hello(self, name: str = "world") -> dict:
        return {"message": f"Hello, {name}!"}

    @bentoml.api
    async def hello_async(self, name: str = "world") -> dict:
        return {"message": f"Hello, {name}!"}

    @bentoml.api
    def ping(self) -> str:
        return "pong"
