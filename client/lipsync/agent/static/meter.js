"use strict";
// The loudness of what is played, every 10 ms: [context time of the block's start, RMS].
class Meter extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 100);
    this.sum = 0;
    this.count = 0;
    this.start = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      if (this.count === 0) this.start = currentTime + i / sampleRate;
      this.sum += channel[i] * channel[i];
      if (++this.count === this.size) {
        this.port.postMessage([this.start, Math.sqrt(this.sum / this.size)]);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor("meter", Meter);
