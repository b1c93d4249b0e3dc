"""Synthetic interaction data with the shape of real data, for scale tests (docs/scale.md).

Real recommendation data has a few traits that decide what breaks and what is learnable:
power-law item popularity (a few blockbusters, a long tail), heavy-tailed user activity, tastes
that concentrate on a few kinds of item, ratings that depend on user and item, and item text that
says what kind of item it is. The generator draws exactly these, in O(N log I) time and
O(chunk x genres) extra memory, and writes RecBole atomic files (<name>.inter, <name>.item) that
`data.format: atomic` reads, so the whole pipeline runs on it through `params.yaml`
(`data.path: artifacts/synthetic/synthetic-1m`; not under data/, which data.dvc pins as a whole) with no special path:

    rrec data synthetic --interactions 1M --out artifacts/synthetic/synthetic-1m

The model of the data:
- item i has one primary genre g(i) (genre sizes drawn from a Dirichlet) and a popularity weight
  (rank + offset)^-item_zipf, ranks shuffled across genres;
- user u has a taste over genres ~ Dirichlet(taste_concentration) (small: a few genres) and an
  activity n_u = min_activity + lognormal, scaled so the total is `n_interactions`;
- each interaction draws a genre from the user's taste (or, with `explore`, from the catalogue's
  popularity), then an item of that genre by popularity; repeats are dropped and redrawn;
- rating = round(3.5 + user bias + item quality + taste match + noise) in 1..5, item quality
  correlated with popularity; timestamps increase per user over 2015-2019;
- titles from word templates coloured by the primary genre, a release year, the genres.

`shape_stats` reports what the tests and docs compare with MovieLens.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ("Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror "
          "Musical Mystery Romance Sci-Fi Thriller War Western").split()

_ADJ = ("Silent Golden Broken Hidden Last Crimson Endless Frozen Wild Distant Burning Secret Lost Iron "
        "Midnight Savage Gentle Hollow Electric Forgotten Shining Restless Bitter Fading Sacred Little Dark "
        "Brave Quiet Final").split()
_NOUN = ("River Heart Road Moon City Kingdom Garden Shadow Promise Storm Island Mirror Letter Summer "
         "Journey Dream Empire Harbor Winter Stranger Legacy Voice Fire Crown Valley Bridge Night Game "
         "Window Circle").split()
_GENRE_NOUN = {
    "Action": "Strike Mission Fury Bullet Chase", "Adventure": "Quest Treasure Expedition Voyage Map",
    "Animation": "Toys Bunny Dragon Robot Penguin", "Children's": "Puppy Friends Wish Picnic Carnival",
    "Comedy": "Wedding Weekend Roommates Vacation Party", "Crime": "Heist Alibi Witness Mob Verdict",
    "Documentary": "Portrait Chronicle Record Truth Archive", "Drama": "Family Choice Letters Silence Years",
    "Fantasy": "Sorcerer Realm Spell Prophecy Amulet", "Film-Noir": "Dame Detective Rain Smoke Motive",
    "Horror": "Curse Haunting Cellar Ritual Nightmare", "Musical": "Song Melody Dance Stage Chorus",
    "Mystery": "Riddle Clue Disappearance Cipher Secret", "Romance": "Love Kiss Affair Sweetheart Vow",
    "Sci-Fi": "Galaxy Android Planet Signal Colony", "Thriller": "Conspiracy Pursuit Hostage Trap Target",
    "War": "Battalion Front Siege Trenches Frontline", "Western": "Outlaw Ranch Sheriff Frontier Saddle",
}
_TEMPLATES = ("The {a} {n}", "{n} of the {a} {g}", "{a} {g}", "The {g}", "Return to the {a} {n}",
              "{n} and the {g}", "A {a} {g}", "The {g} of {n}", "{g} {k}", "The {a} {g} {k}")
_SEQUEL = ("II", "III", "Returns", "Reloaded", "Forever")

T0, T1 = 1420070400, 1577836800  # 2015-01-01 .. 2020-01-01 (UTC): before any run's max_timestamp


@dataclass
class SyntheticSpec:
    n_interactions: int
    n_users: int | None = None         # default n_interactions / 140 (MovieLens-1M..20M: 140-165 per user)
    n_items: int | None = None         # default 1682 * sqrt(n / 100K) (ML-100K 1682, ML-10M about 10.7K)
    item_zipf: float = 1.2            # popularity weight (rank + item_offset) ** -item_zipf
    item_offset: float = 10.0
    activity_sigma: float = 1.0        # lognormal sigma of user activity above min_activity
    min_activity: int = 10
    taste_concentration: float = 0.3   # Dirichlet parameter of a user's genre taste (small: a few genres)
    explore: float = 0.2               # share of interactions drawn from the catalogue's popularity
    seed: int = 0
    name: str = "synthetic"

    def resolved(self) -> "SyntheticSpec":
        n = int(self.n_interactions)
        users = self.n_users or max(20, round(n / 140))
        items = self.n_items or max(50, round(1682 * (n / 1e5) ** 0.5))
        if n < users * self.min_activity:
            raise ValueError(f"{n} interactions cannot give {users} users {self.min_activity} each")
        if self.min_activity * 2 > items:
            raise ValueError(f"{items} items are too few for users with {self.min_activity} interactions")
        return SyntheticSpec(**{**asdict(self), "n_interactions": n, "n_users": users, "n_items": items})


def parse_count(text: str | int) -> int:
    """'1M' -> 1_000_000, '2.5k' -> 2500, '10000000' -> 10_000_000."""
    if isinstance(text, int):
        return text
    s = str(text).strip().replace("_", "")
    mult = {"k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "b": 10 ** 9}.get(s[-1:].lower(), 1)
    try:
        return int(round(float(s[:-1] if mult > 1 else s) * mult))
    except ValueError:
        raise ValueError(f"{text!r} is not a count (e.g. 1000000, 1M, 250k)") from None


def generate(spec: SyntheticSpec, chunk: int = 2_000_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) frames in rrec's contract with internal ids as strings (1-based)."""
    spec = spec.resolved()
    rng = np.random.default_rng(spec.seed)
    n_users, n_items, n_genres = spec.n_users, spec.n_items, len(GENRES)
    assert n_users is not None and n_items is not None

    # items: genre, popularity; items ordered by genre so a genre is one contiguous range of the CDF
    genre_share = rng.dirichlet(np.full(n_genres, 2.0))
    genre = np.sort(rng.choice(n_genres, size=n_items, p=genre_share))
    pop = (rng.permutation(n_items) + spec.item_offset) ** -spec.item_zipf
    cdf = np.cumsum(pop)
    starts = np.searchsorted(genre, np.arange(n_genres), side="left")
    ends = np.searchsorted(genre, np.arange(n_genres), side="right")
    lo = np.where(starts > 0, cdf[np.maximum(starts - 1, 0)], 0.0)
    hi = np.where(ends > 0, cdf[np.maximum(ends - 1, 0)], 0.0)
    genre_mass = hi - lo  # popularity mass of each genre (0 for a genre without items)

    # users: taste over the genres that have items, activity
    taste = rng.dirichlet(np.full(n_genres, spec.taste_concentration), size=n_users) * (genre_mass > 0)
    taste /= taste.sum(1, keepdims=True)
    raw = rng.lognormal(0.0, spec.activity_sigma, n_users)
    extra = raw / raw.sum() * (spec.n_interactions - spec.min_activity * n_users)
    activity = np.minimum(spec.min_activity + np.floor(extra).astype(np.int64), n_items // 2)
    short = spec.n_interactions - int(activity.sum())  # floor and cap losses, given to random users
    while short > 0:
        room = np.flatnonzero(activity < n_items // 2)
        add = rng.choice(room, size=min(short, len(room)), replace=False)
        activity[add] += 1
        short -= len(add)

    def draw(users: np.ndarray, by_popularity: bool = True) -> np.ndarray:
        """One item per entry of `users`, by the model above, chunked to bound memory; not by_popularity:
        uniform within the drawn genre (what redraws use once a user has the genre's popular items)."""
        out = np.empty(len(users), dtype=np.int64)
        cum_taste = np.cumsum(taste, axis=1)
        for s in range(0, len(users), chunk):
            u = users[s:s + chunk]
            r = rng.random(len(u))
            g = (cum_taste[u] < r[:, None]).sum(1).clip(max=n_genres - 1)
            pick = rng.random(len(u))
            explore = rng.random(len(u)) < spec.explore
            if by_popularity:
                inside = lo[g] + pick * genre_mass[g]
                inside[explore] = pick[explore] * cdf[-1]
                out[s:s + chunk] = np.searchsorted(cdf, inside, side="right").clip(max=n_items - 1)
            else:
                item = starts[g] + np.floor(pick * (ends[g] - starts[g])).astype(np.int64)
                item[explore] = np.floor(pick[explore] * n_items).astype(np.int64)
                out[s:s + chunk] = item.clip(max=n_items - 1)
        return out

    users = np.repeat(np.arange(n_users, dtype=np.int64), activity)
    key = _distinct(users * n_items + draw(users))
    for round_ in range(100):  # repeats dropped and redrawn for the users that lost them
        need = activity - np.bincount(key // n_items, minlength=n_users)
        if not need.any():
            break
        again = np.repeat(np.arange(n_users, dtype=np.int64), need)
        # a heavy user soon has its genres' popular items: then uniformly within its genres, and
        # after that (a taste narrower than its activity) from the whole catalogue
        fresh = (draw(again) if round_ < 3 else draw(again, by_popularity=False) if round_ < 20
                 else rng.integers(0, n_items, len(again)))
        key = _distinct(np.concatenate([key, again * n_items + fresh]))
    else:
        raise RuntimeError("synthetic data: could not draw distinct items for every user")
    users, items = key // n_items, key % n_items

    # ratings: user bias + item quality (more popular, a bit better) + taste match + noise
    quality = 0.35 * (np.log(pop) - np.log(pop).mean()) / np.log(pop).std() + rng.normal(0, 0.45, n_items)
    bias = rng.normal(0, 0.45, n_users)
    match = taste[users, genre[items]] * n_genres / 4  # 0 outside the user's genres, about 1 at its core
    rating = np.clip(np.rint(3.0 + bias[users] + quality[items] + 0.4 * np.minimum(match, 2.0)
                             + rng.normal(0, 0.8, len(users))), 1, 5)

    # timestamps: a start per user, exponential gaps, in order within the user
    order = np.lexsort((rng.random(len(users)), users))
    users, items, rating = users[order], items[order], rating[order]
    # a mean gap of 3 days, shorter for users so active that 3 days would not fit in the window
    per_user = np.minimum(86400.0 * 3, 0.8 * (T1 - T0) / np.maximum(activity, 1))
    gaps = rng.exponential(1.0, len(users)) * per_user[users]
    first = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    cum = np.cumsum(gaps)
    cum -= np.repeat(cum[first] - gaps[first], np.diff(np.r_[first, len(users)]))
    span = cum[np.r_[first[1:] - 1, len(users) - 1]]
    start = np.maximum(T0, np.minimum(T0 + rng.random(n_users) * (T1 - T0), T1 - span))
    ts = np.minimum(start[users] + cum, T1).astype(np.int64)  # monotone clip: order kept

    interactions = pd.DataFrame({"user_id": (users + 1).astype(str), "item_id": (items + 1).astype(str),
                                 "rating": rating.astype("float64"), "timestamp": ts})
    return interactions, _item_table(rng, genre, n_items)


def _distinct(key: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + compare: numpy's hash-based unique is far slower on int64 keys)."""
    key = np.sort(key)
    return key[np.r_[True, key[1:] != key[:-1]]]


def _item_table(rng: np.random.Generator, genre: np.ndarray, n_items: int) -> pd.DataFrame:
    titles, genres = [], []
    for i in range(n_items):
        g = GENRES[genre[i]]
        words = _GENRE_NOUN[g].split()
        t = _TEMPLATES[rng.integers(len(_TEMPLATES))].format(
            a=_ADJ[rng.integers(len(_ADJ))], n=_NOUN[rng.integers(len(_NOUN))], g=words[rng.integers(len(words))],
            k=_NOUN[rng.integers(len(_NOUN))])
        if rng.random() < 0.06:
            t += " " + _SEQUEL[rng.integers(len(_SEQUEL))]
        titles.append(t)
        extra = {GENRES[j] for j in rng.choice(len(GENRES), size=rng.integers(0, 3), replace=False)} - {g}
        genres.append(" ".join([g, *sorted(extra)]))
    year = np.clip(np.rint(2019 - rng.exponential(14, n_items)), 1920, 2019).astype(int)
    return pd.DataFrame({"item_id": [str(i + 1) for i in range(n_items)], "title": titles, "year": year,
                         "genres": genres})


def write_atomic_dataset(interactions: pd.DataFrame, items: pd.DataFrame, out: str | Path, name: str,
                         meta: dict | None = None) -> Path:
    """<out>/<name>.inter and <name>.item (RecBole atomic TSV), written to a temporary folder beside
    `out` and renamed over it, so a reader never sees half a dataset."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the data from a DVC cache or another user
    try:
        inter = interactions.rename(columns={"user_id": "user_id:token", "item_id": "item_id:token",
                                             "rating": "rating:float", "timestamp": "timestamp:float"})
        inter["rating:float"] = inter["rating:float"].astype("int64")
        inter.to_csv(tmp / f"{name}.inter", sep="\t", index=False, chunksize=1_000_000)
        items.rename(columns={"item_id": "item_id:token", "title": "movie_title:token_seq",
                              "year": "release_year:token", "genres": "class:token_seq"}).to_csv(
            tmp / f"{name}.item", sep="\t", index=False)
        if meta is not None:
            (tmp / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n")
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def shape_stats(interactions: pd.DataFrame) -> dict[str, float]:
    """The statistics that say whether data has the shape of real data (docs/scale.md)."""
    users = interactions["user_id"].value_counts().to_numpy()
    items = np.sort(interactions["item_id"].value_counts().to_numpy())  # ascending
    n = len(interactions)
    cum = np.cumsum(items)
    gini = float(1 - 2 * (cum / cum[-1]).sum() / len(items) + 1 / len(items))
    top = items[::-1]
    # log-log slope of popularity against rank over ranks 10..1000 (or what the catalogue has): about
    # -1 for a Zipf catalogue, 0 for a uniform one
    r = np.arange(1, len(top) + 1)
    sel = (r >= 10) & (r <= min(1000, len(top)))
    slope = float(np.polyfit(np.log(r[sel]), np.log(top[sel]), 1)[0]) if sel.sum() > 5 else float("nan")
    out = {"interactions": n, "users": len(users), "items": len(items),
           "density": n / (len(users) * len(items)),
           "user_mean": float(users.mean()), "user_sd": float(users.std()), "user_min": int(users.min()),
           "user_max": int(users.max()), "user_cv": float(users.std() / users.mean()),
           "item_gini": gini, "item_top1pct_share": float(top[:max(1, len(top) // 100)].sum() / n),
           "item_rank_slope": slope}
    if "rating" in interactions:
        out["rating_mean"] = float(interactions["rating"].mean())
        out["rating_sd"] = float(interactions["rating"].std())
    return out


def synthesize(spec: SyntheticSpec, out: str | Path) -> dict:
    """Generate and write; returns {spec, stats, path}."""
    spec = spec.resolved()
    interactions, items = generate(spec)
    meta = {"spec": asdict(spec), "stats": shape_stats(interactions)}
    write_atomic_dataset(interactions, items, out, spec.name, meta)
    return {**meta, "path": str(out)}
