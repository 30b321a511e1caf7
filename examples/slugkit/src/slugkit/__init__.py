"""slugkit: slugs, case conversion and fuzzy matching for short strings."""

from slugkit.cases import camel_to_snake, snake_to_camel, title_case
from slugkit.fuzzy import closest, ngrams, similarity
from slugkit.slugs import slugify, truncate, unique_slug

__all__ = [
    "camel_to_snake",
    "closest",
    "ngrams",
    "similarity",
    "slugify",
    "snake_to_camel",
    "title_case",
    "truncate",
    "unique_slug",
]
