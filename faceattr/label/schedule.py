# TEMPORARY STUB (lead's testing; replaced by wt-ratings)
from dataclasses import dataclass
@dataclass
class ScheduleSettings:
    scheme: str = "seeds"; random_share: float = 0.75; votes_per_image: int = 20; cap_per_image: int | None = None
def choose_pair(settings, ratings, counts, votes_done, rng, prior=None, avoid=None):
    n=len(ratings)
    if settings.cap_per_image is not None and (counts<settings.cap_per_image).sum()<2: return None
    i,j=rng.choice(n,2,replace=False); return int(i),int(j)
def prior_ratings(prior): return (prior-prior.mean())/(prior.std()+1e-9)*100
