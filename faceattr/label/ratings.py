# TEMPORARY STUB (lead's testing; replaced by wt-ratings)
from dataclasses import dataclass
import numpy as np
ELO_START=0.0; ELO_K=10.0; ELO_DIVISOR=200.0
def elo_expected(r1,r2): return 1/(1+10**((r2-r1)/ELO_DIVISOR))
def elo_update(r1,r2,o):
    e=elo_expected(r1,r2); return r1+ELO_K*(o-e), r2+ELO_K*((1-o)-(1-e))
def elo_ratings(n,first,second,outcome,start=None):
    r=np.zeros(n) if start is None else np.array(start,float)
    for a,b,o in zip(first,second,outcome): r[a],r[b]=elo_update(r[a],r[b],o)
    return r
@dataclass
class BradleyTerryFit:
    scores: np.ndarray; standard_errors: np.ndarray
    def interval(self, level=0.95): return self.scores-2*self.standard_errors, self.scores+2*self.standard_errors
def fit_bradley_terry(n,first,second,outcome):
    return BradleyTerryFit(elo_ratings(n,first,second,outcome)/100, np.ones(n))
def split_half_reliability(n,first,second,outcome,seed=0): return 0.5
@dataclass
class RaterStatistics:
    rater: str; votes: int; skips: int = 0
def rater_statistics(rater,first,second,outcome,response_ms,scores):
    return [RaterStatistics(str(r), int((rater==r).sum())) for r in sorted(set(rater))]
def beauty_scale(scores): z=(scores-scores.mean())/(scores.std()+1e-9); return np.clip(3+0.7*z,1,5)
