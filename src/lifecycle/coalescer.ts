// Work that follows changes, coalesced: run soon after it is asked for, at most once per
// `minGapMs`. A lone change is handled on the next turn of the event loop (a fixed 20 ms delay
// cost every hop of a placement, leader and worker, 80 ms in all), and a burst of thousands of
// changes a second is still handled a few dozen times a second, not once per change.

export class Coalescer {
  private timer: NodeJS.Timeout | undefined;
  private last = -Infinity;

  constructor(
    private readonly fn: () => void,
    private readonly minGapMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Asks for a run; asks that come before it starts fold into it. */
  kick(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.last + this.minGapMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.last = this.now();
      this.fn();
    }, wait);
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
