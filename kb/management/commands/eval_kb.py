"""The bot's evaluation (docs/bot.md): its answers to kb/eval/questions.csv from the
articles in kb/eval/articles, with the model and on keyword search alone.

Nothing is kept: the articles go into a throwaway site inside a transaction that is
rolled back at the end."""

import csv
import resource
import statistics
import time
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from chat.models import Site
from kb import answering, embedding, importing, search
from kb.models import Article

EVAL = Path(__file__).resolve().parents[2] / "eval"


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Top-1 accuracy and off-topic abstention of the bot on its evaluation set."

    def add_arguments(self, parser):
        parser.add_argument("--articles", default=str(EVAL / "articles"))
        parser.add_argument("--questions", default=str(EVAL / "questions.csv"))
        parser.add_argument("--latency", action="store_true", help="also time each answer")
        parser.add_argument("--misses", action="store_true", help="list the questions missed")

    def handle(self, *args, articles, questions, latency, misses, **options):
        with Path(questions).open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        # A worker's share: the model's weights (loaded here, before any import) and what
        # answering adds; an import's batches peak higher, in the import's process only.
        rss_before = _rss_mb()
        embedding.available()
        self.rss_model = _rss_mb() - rss_before
        try:
            with transaction.atomic():
                site = Site.objects.create(name="kb evaluation", allowed_origins=[])
                started = time.perf_counter()
                importing.import_articles(site, importing.read_path(Path(articles)))
                imported_in = time.perf_counter() - started
                titles = {a.id: a for a in Article.objects.filter(site=site)}
                by_stem = {_stem_of(Path(articles), a.title): a.id for a in titles.values()}
                self.stdout.write(
                    f"{len(titles)} articles (imported in {imported_in:.1f} s), {len(rows)} "
                    f"questions, {sum(1 for r in rows if not r['article'])} of them off-topic"
                )
                modes = [True, False] if embedding.available() else [False]
                if not embedding.available():
                    self.stdout.write(f"model: {embedding.unavailable_reason()}")
                for use_model in modes:
                    # Weights and thresholds were chosen on the odd-numbered questions
                    # (1st, 3rd, ...): the even-numbered ones are the held-out half.
                    for part, chosen in (("all", rows), ("held-out", rows[1::2])):
                        self._evaluate(site.id, chosen, by_stem, use_model, misses, part)
                if latency:
                    self._latency(site.id, rows, rss_before)
                raise Rollback
        except Rollback:
            pass

    def _evaluate(self, site_id, rows, by_stem, use_model, misses, part):
        on_topic = right = answered_right = 0
        off_topic = abstained = 0
        missed = []
        for row in rows:
            reply = answering.reply_to(site_id, row["question"], use_model=use_model)
            if row["article"]:
                on_topic += 1
                expected = by_stem[row["article"]]
                best = reply.hit.article_id if reply.hit else None
                right += best == expected
                cited_right = reply.confident and best == expected
                answered_right += cited_right
                if not cited_right:
                    missed.append((row["question"], row["article"], reply))
            else:
                off_topic += 1
                abstained += not reply.confident
                if reply.confident:
                    missed.append((row["question"], "(off-topic)", reply))
        name = "keyword + model" if use_model else "keyword only"
        self.stdout.write(
            f"{name:16} {part:8} top-1 cited right {answered_right}/{on_topic} "
            f"({100 * answered_right / on_topic:.1f} %), best article right {right}/{on_topic} "
            f"({100 * right / on_topic:.1f} %), off-topic abstained {abstained}/{off_topic} "
            f"({100 * abstained / off_topic:.1f} %)"
        )
        if misses and part == "all":
            for question, expected, reply in missed:
                got = reply.hit.title if reply.hit else "-"
                score = f"{reply.hit.score:.2f}" if reply.hit else "-"
                flag = "answered" if reply.confident else "abstained"
                self.stdout.write(f"   {question!r}: want {expected}, {flag} {got} ({score})")

    def _latency(self, site_id, rows, rss_before):
        answering.reply_to(site_id, "warm up")
        times = []
        for _round in range(3):
            for row in rows:
                started = time.perf_counter()
                answering.reply_to(site_id, row["question"])
                times.append(1000 * (time.perf_counter() - started))
        times.sort()
        p95 = times[int(0.95 * len(times)) - 1]
        self.stdout.write(
            f"latency ({search.mode()}): {len(times)} answers, median "
            f"{statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms; "
            f"memory: model loaded +{self.rss_model:.0f} MB, after the import and the "
            f"answers +{_rss_mb() - rss_before:.0f} MB (RSS now, over the process before "
            f"the model); peak RSS {_peak_mb():.0f} MB (the import's batches)"
        )


def _stem_of(folder: Path, title: str) -> str:
    for file in folder.glob("*.md"):
        if file.read_text(encoding="utf-8").splitlines()[0][2:].strip() == title:
            return file.stem
    raise KeyError(title)


def _rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
