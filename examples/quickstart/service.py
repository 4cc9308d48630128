"""Iris classifier: a scikit-learn model trained at start-up.

    pip install -r examples/quickstart/requirements.txt
    python -m bentohost serve examples/quickstart/service.py:IrisClassifier --port 3000
"""
try:
    import bentohost as bentoml
except ImportError:  # the same file under BentoML
    import bentoml


@bentoml.service(workers=1)
class IrisClassifier:
    def __init__(self) -> None:
        # Imported here so that importing the module (e.g. to read its APIs) stays cheap.
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        iris = load_iris()  # ships with scikit-learn: no download
        self.species = [str(name) for name in iris.target_names]
        self.model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)

    @bentoml.api
    def classify(self, features: list[list[float]]) -> list[str]:
        return [self.species[int(i)] for i in self.model.predict(features)]
