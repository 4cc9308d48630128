"""bench/peers.py's service: the same file runs under `python -m bentohost serve` and `bentoml serve`.

    python -m bentohost serve bench/services/peers_svc.py:Peers --workers 1
    cd bench/services && bentoml serve peers_svc:Peers

POST /predict {"user": {...}, "items": [...]} -> {"name", "count", "total", "tags"}: the work in
peers_work.py (the same models and function every peer in bench/services/peers_apps.py serves).
"""
try:
    import bentohost as bentoml
except ImportError:  # the same file under BentoML (bench/peers.py starts it from bench/services/)
    import bentoml

from peers_work import Item, User, compute


@bentoml.service(workers=1)
class Peers:
    @bentoml.api
    def predict(self, user: User, items: list[Item]) -> dict:
        return compute(user, items)
