"""Localization of a user's own photos: query photos matched against a folder of geotagged
database photos with a trained model (`python -m vgjax.localize`).

- `coordinates`: each database photo's place, from a CSV, its @UTM name or its EXIF GPS;
- `index`: the described database as a faiss index, saved and reloaded with the model's
  identity;
- `predictions`: top-k matches, their confidence, predictions.csv;
- `pictures`, `map`: a picture per query, a map of the predicted places;
- `cli`: the command.
"""
