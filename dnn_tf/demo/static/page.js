/* The draw-a-letter page: the pad (mouse, touch, pen), the 28x28 image the network sees, the ten
 * bars and the guess in words. The computation is in dnn_tf.js; this file is only the page around
 * it, plain DOM code (no framework: nothing to download or build, and it works from file://).
 *
 * Adds to window.dnnTf:
 *   preprocess()  the 784 pixels (0..255, white ink on black) the pad currently gives the network
 *   clear()       empties the pad, as the Clear button does
 *   ready         true once the weights are decoded
 *   lastStroke    {classifyMs, endToBarsMs} of the latest stroke: the time to frame and classify the
 *                 drawing, and from the stroke's end (its pointerup event) to a task run right after
 *                 the animation frame that paints the new bars (scripts/demo_speed.py reads it)
 */
(function () {
  "use strict";

  var api = window.dnnTf;
  var pad = document.getElementById("pad");
  var seen = document.getElementById("seen");
  var guess = document.getElementById("guess");
  var modelLine = document.getElementById("model");
  var barList = document.getElementById("bars");
  var PEN = 0.045;  // the pad's pen width, a fraction of its side (only for show: the network's pen is dnnTf.framing)
  var AN = "AEFHI";  // letters said with a vowel first: an A, an F, an H ...

  var strokes = [];  // each an array of [x, y], fractions of the pad's side
  var active = null;  // the stroke being drawn: {id, points}
  var pending = 0;  // a requested animation frame that will update the answer
  var drawn = true;  // whether the pad shows every point yet
  var bars = [];

  function init() {
    if (!api || !api.classify) return fail("the page's script dnn_tf.js did not load");
    api.letters.split("").forEach(function (letter) {
      var li = document.createElement("li");
      li.innerHTML = '<span class="letter"></span><span class="track"><span class="fill"></span></span>' +
                     '<span class="value">0%</span>';
      li.querySelector(".letter").textContent = letter;
      li.dataset.letter = letter;
      li.dataset.p = "0";
      barList.appendChild(li);
      bars.push(li);
    });
    api.preprocess = function () { return api.frame(strokes); };
    api.clear = clear;
    api.lastStroke = null;
    listen();
    resize();
    window.addEventListener("resize", resize);
    document.getElementById("clear").addEventListener("click", clear);
    // Decoding the weights takes a moment for a big network: show the page first.
    requestAnimationFrame(function () { setTimeout(start, 0); });
  }

  function start() {
    try {
      var model = api.load();
      var info = model.info || {};
      var words = [model.name + ": " + model.sizes.join("-")];
      if (typeof info.test_accuracy === "number") words.push("test accuracy " + info.test_accuracy.toFixed(1) + "%");
      words.push(model.dtype + " weights, " + size(model.bytes));
      modelLine.textContent = words.join(" · ");
    } catch (e) {
      return fail(e.message);
    }
    api.ready = true;
  }

  function size(bytes) {  // as dnn-tf-demo says it
    return bytes >= 1e5 ? (bytes / 1e6).toFixed(1) + " MB" : Math.round(bytes / 1e3) + " kB";
  }

  function fail(message) {
    modelLine.textContent = "The network could not be loaded: " + message;
    modelLine.className = "error";
    if (api) api.ready = false;
  }

  // ------------------------------------------------------------------ drawing

  function resize() {
    var side = pad.getBoundingClientRect().width, ratio = window.devicePixelRatio || 1;
    pad.width = pad.height = Math.max(1, Math.round(side * ratio));
    redraw();
  }

  function context() {
    var ctx = pad.getContext("2d"), side = pad.width;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineWidth = PEN * side;
    return ctx;
  }

  function redraw() {  // each stroke as one path: no blots where its segments overlap
    var ctx = context(), side = pad.width;
    ctx.clearRect(0, 0, pad.width, pad.height);
    strokes.forEach(function (points) {
      ctx.beginPath();
      ctx.moveTo(points[0][0] * side, points[0][1] * side);
      for (var i = 1; i < points.length; i++) ctx.lineTo(points[i][0] * side, points[i][1] * side);
      if (points.length === 1) ctx.lineTo(points[0][0] * side + 0.01, points[0][1] * side);  // a dot
      ctx.stroke();
    });
  }

  function point(e) {
    var rect = pad.getBoundingClientRect();
    return [(e.clientX - rect.left) / rect.width, (e.clientY - rect.top) / rect.height];
  }

  function add(e) {
    var p = point(e), points = active.points, last = points[points.length - 1];
    if (last && last[0] === p[0] && last[1] === p[1]) return;
    points.push(p);
    drawn = false;
  }

  function down(e) {
    if (active || !api.ready || (e.pointerType === "mouse" && e.button !== 0)) return;
    if (e.preventDefault) e.preventDefault();
    if (pad.setPointerCapture && typeof e.pointerId === "number") {
      try { pad.setPointerCapture(e.pointerId); } catch (ignored) { /* a synthetic pointer */ }
    }
    active = {id: e.pointerId, points: []};
    strokes.push(active.points);
    add(e);
    schedule();
  }

  function move(e) {
    if (!active || e.pointerId !== active.id) return;
    if (e.preventDefault) e.preventDefault();
    var all = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    (all.length ? all : [e]).forEach(add);
    schedule();
  }

  function up(e) {
    if (!active || e.pointerId !== active.id) return;
    if (e.type !== "pointercancel" && e.type !== "touchcancel") add(e);
    active = null;
    strokeEnd(e);
  }

  function listen() {
    if (window.PointerEvent) {
      pad.addEventListener("pointerdown", down);
      pad.addEventListener("pointermove", move);
      pad.addEventListener("pointerup", up);
      pad.addEventListener("pointercancel", up);
      return;
    }
    // Browsers without pointer events: mouse and touch events, as pointers with ids "mouse" and the touch's.
    function mouse(handler) {
      return function (e) {
        handler({type: e.type, pointerId: "mouse", pointerType: "mouse", button: e.button, clientX: e.clientX,
                 clientY: e.clientY, timeStamp: e.timeStamp, preventDefault: e.preventDefault.bind(e)});
      };
    }
    function touch(handler) {
      return function (e) {
        e.preventDefault();
        Array.prototype.forEach.call(e.changedTouches, function (t) {
          handler({type: e.type, pointerId: "touch" + t.identifier, pointerType: "touch", button: 0,
                   clientX: t.clientX, clientY: t.clientY, timeStamp: e.timeStamp});
        });
      };
    }
    pad.addEventListener("mousedown", mouse(down));
    window.addEventListener("mousemove", mouse(move));
    window.addEventListener("mouseup", mouse(up));
    pad.addEventListener("touchstart", touch(down), {passive: false});
    pad.addEventListener("touchmove", touch(move), {passive: false});
    pad.addEventListener("touchend", touch(up), {passive: false});
    pad.addEventListener("touchcancel", touch(up), {passive: false});
  }

  function clear() {
    strokes = [];
    active = null;
    redraw();
    update();
  }

  // ------------------------------------------------------------------ the answer

  function schedule() {  // at most one update per frame while drawing
    if (!pending) pending = requestAnimationFrame(function () { pending = 0; update(); });
  }

  function strokeEnd(e) {  // the stroke is over: update now, and time it
    if (pending) { cancelAnimationFrame(pending); pending = 0; }
    var t0 = performance.now();
    var start = e.timeStamp > 0 && e.timeStamp <= t0 ? e.timeStamp : t0;
    update();
    var t1 = performance.now();
    requestAnimationFrame(function () {
      setTimeout(function () {
        api.lastStroke = {classifyMs: t1 - t0, endToBarsMs: performance.now() - start};
      }, 0);
    });
  }

  function update() {
    if (!drawn) { redraw(); drawn = true; }
    var pixels = api.frame(strokes);
    show(pixels);
    if (!strokes.length) {
      bars.forEach(function (li) { setBar(li, 0, false); });
      guess.textContent = "Draw a letter from A to J.";
      return;
    }
    var p = api.classify(pixels), order = p.map(function (_, i) { return i; });
    order.sort(function (a, b) { return p[b] - p[a]; });
    bars.forEach(function (li, i) { setBar(li, p[i], i === order[0]); });
    guess.textContent = words(p, order);
  }

  function setBar(li, p, top) {
    li.dataset.p = String(p);
    li.className = top ? "top" : "";
    li.style.setProperty("--p", p.toFixed(4));  // the bar's length (page.css)
    li.querySelector(".value").textContent = Math.round(100 * p) + "%";
  }

  function called(letter) {
    return (AN.indexOf(letter) >= 0 ? "an " : "a ") + letter;
  }

  function percent(p) {
    return Math.round(100 * p) + "%";
  }

  function words(p, order) {
    var first = api.letters[order[0]], second = api.letters[order[1]], top = p[order[0]];
    if (top >= 0.9) return "That's " + called(first) + ".";
    if (top >= 0.5) return "Probably " + called(first) + " (" + percent(top) + ").";
    return "Maybe " + called(first) + " (" + percent(top) + "), or " + called(second) + " (" +
           percent(p[order[1]]) + ").";
  }

  function show(pixels) {  // the 28x28 image, gray levels as given
    var ctx = seen.getContext("2d"), image = ctx.createImageData(28, 28);
    for (var i = 0; i < pixels.length; i++) {
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = pixels[i];
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  init();
})();
