"""Restart bench service (bench/restart.py): a sync hello, two workers.

Runs unchanged under bentohost and BentoML (the `try: import bentohost as bentoml` trick).
"""
try:
    import bentohost as bentoml
except ImportError:
    import bentoml


@bentoml.service(workers=2)
class Hello:
    @bentoml.api
    def hello(self, name: str = "world") -> dict:
        return {"message": f"Hello, {name}!"}
