/* The draw-a-letter page's computation: the trained network's forward pass and the framing that
 * makes a drawing look like a notMNIST glyph. No DOM here, so the very same file runs in node,
 * where the tests check it against the SavedModel.
 *
 * Hand-written, no library: the page must work offline from file:// with no build step and no
 * download, and all it needs is a few matrix-vector products and a line rasterizer; a numerical
 * library would be many times the size of this file and one more thing to vendor and update.
 *
 * window.dnnTf (globalThis.dnnTf in node) after this file and weights.js are loaded:
 *   classify(pixels)  ten probabilities (A..J) for 784 pixels 0..255, row-major, white ink on black
 *                     (as the notMNIST PNGs store them)
 *   frame(strokes)    the 784 pixels the network is shown for a drawing: strokes are arrays of
 *                     [x, y] points in any units, y downwards
 *   letters, model    "ABCDEFGHIJ"; the network's layer sizes, weight precision, name and scores
 * page.js adds preprocess() (frame() of what is on the pad) and the pad itself.
 */
(function (root) {
  "use strict";

  var LETTERS = "ABCDEFGHIJ";
  var SIZE = 28;
  var PIXELS = SIZE * SIZE;
  var PIXEL_DEPTH = 255;

  // How notMNIST frames a letter, measured on the real glyphs by scripts/notmnist_framing.py (the
  // figures are in docs/demo.md): the ink fills the 28x28 frame edge to edge in both directions,
  // whatever the letter's own proportions; white ink on black, anti-aliased. The pen is the one
  // whose strokes that script finds as wide as the glyphs' (median).
  var FRAMING = {
    penWidth: 3.7,      // pixels of the 28x28 frame
    margin: 0,          // pixels between the ink and the frame's edge
    ink: 255,
    background: 0,
    // A drawing much narrower than tall (an I as one bar) is widened at most this many times more
    // than it is heightened (and the other way round), so a bar stays a bar, not a filled square.
    maxStretch: 3,
    supersample: 4      // samples per pixel side when drawing the strokes (anti-aliasing)
  };

  // ------------------------------------------------------------------ weights (weights.js)

  function decodeBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  var halfTable = null;

  function halfToFloat(bits) {  // IEEE 754 binary16 -> number
    var sign = bits & 0x8000 ? -1 : 1;
    var exponent = (bits >> 10) & 0x1f;
    var fraction = bits & 0x3ff;
    if (exponent === 0) return sign * fraction * Math.pow(2, -24);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
  }

  function halves(bytes, offset, count) {
    if (!halfTable) {
      halfTable = new Float32Array(65536);
      for (var b = 0; b < 65536; b++) halfTable[b] = halfToFloat(b);
    }
    var bits = new Uint16Array(bytes.buffer, offset, count);
    var out = new Float32Array(count);
    for (var i = 0; i < count; i++) out[i] = halfTable[bits[i]];
    return out;
  }

  function littleEndian() {
    return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  }

  /* The layers of a weights.js spec: [{rows, cols, w (rows x cols, row-major: x @ w), b}], first first.
   * The data holds each layer's w then b, little-endian float32 or float16. */
  function loadModel(spec) {
    if (!spec || spec.format !== "dnn-tf-demo/1") throw new Error("weights.js: not a dnn-tf-demo model");
    var width = spec.dtype === "float16" ? 2 : spec.dtype === "float32" ? 4 : 0;
    if (!width) throw new Error("weights.js: unknown dtype " + spec.dtype);
    var bytes = decodeBase64(spec.data);
    if (!littleEndian()) {  // the file is little-endian; swap each value's bytes in place
      for (var s = 0; s < bytes.length; s += width) bytes.subarray(s, s + width).reverse();
    }
    var layers = [], offset = 0;
    spec.layers.forEach(function (shape) {
      var rows = shape[0], cols = shape[1];
      var read = function (count) {
        if (offset + count * width > bytes.length) throw new Error("weights.js: data too short");
        var values = width === 4 ? new Float32Array(bytes.buffer, offset, count) : halves(bytes, offset, count);
        offset += count * width;
        return values;
      };
      var w = read(rows * cols);
      layers.push({rows: rows, cols: cols, w: w, b: read(cols)});
    });
    if (offset !== bytes.length) throw new Error("weights.js: data too long");
    if (layers[0].rows !== PIXELS || layers[layers.length - 1].cols !== LETTERS.length) {
      throw new Error("weights.js: the network does not map 784 pixels to 10 letters");
    }
    return layers;
  }

  // ------------------------------------------------------------------ the forward pass

  /* Probabilities (Float64Array of 10) of 784 pixels 0..255: x @ W + b per layer, ReLU between
   * layers, softmax at the end, as dnn_tf.model.MLP computes (no dropout) on the normalized image
   * x = (p - 127.5) / 255 (dnn_tf.notmnist.normalize). Written x = p / 255 - 0.5, the first layer is
   * blank(W, b) + (p / 255) @ W, with blank = b - 0.5 * (sum of W's rows) computed once: a black
   * pixel then costs nothing, as a unit that a ReLU zeroed costs nothing in the next layer. Sums run
   * in float64; each layer's output is rounded to float32 like TensorFlow's. */
  function forward(layers, pixels) {
    var a = pixels, scale = 1 / PIXEL_DEPTH;
    for (var l = 0; l < layers.length; l++) {
      var layer = layers[l], rows = layer.rows, cols = layer.cols, w = layer.w;
      var sum = Float64Array.from(l === 0 ? blank(layer) : layer.b);
      for (var i = 0; i < rows; i++) {
        var xi = l === 0 ? a[i] * scale : a[i];
        if (xi === 0) continue;
        var row = w.subarray(i * cols, (i + 1) * cols);  // a view: faster to index than w with an offset
        for (var k = 0; k < cols; k++) sum[k] += xi * row[k];
      }
      var out = new Float32Array(cols);
      var hidden = l < layers.length - 1;
      for (var m = 0; m < cols; m++) out[m] = hidden && sum[m] < 0 ? 0 : sum[m];
      a = out;
    }
    var top = -Infinity, total = 0, p = new Float64Array(a.length);
    for (var c = 0; c < a.length; c++) top = Math.max(top, a[c]);
    for (c = 0; c < a.length; c++) total += (p[c] = Math.exp(a[c] - top));
    for (c = 0; c < a.length; c++) p[c] /= total;
    return p;
  }

  function blank(layer) {  // the first layer's output for an all-black image, before its ReLU
    if (!layer.blank) {
      var cols = layer.cols, out = Float64Array.from(layer.b);
      for (var i = 0; i < layer.rows; i++) {
        for (var k = 0; k < cols; k++) out[k] -= 0.5 * layer.w[i * cols + k];
      }
      layer.blank = out;
    }
    return layer.blank;
  }

  function checkPixels(pixels) {
    if (!pixels || typeof pixels.length !== "number") throw new TypeError("classify needs 784 pixel values");
    if (pixels.length !== PIXELS) throw new RangeError("classify needs 784 pixels, got " + pixels.length);
    for (var i = 0; i < PIXELS; i++) {
      var v = pixels[i];
      if (typeof v !== "number" || !(v >= 0 && v <= PIXEL_DEPTH)) {
        throw new RangeError("pixel " + i + " is " + v + ", not a number in 0..255");
      }
    }
  }

  // ------------------------------------------------------------------ framing a drawing

  /* The 784 pixels (Array of integers 0..255) that the network sees for a drawing (see FRAMING).
   * The strokes' centre lines are stretched to the frame, each direction on its own, leaving half a
   * pen width at each edge, and drawn again with a round pen of the measured width, so the size and
   * pen of the drawing do not matter. A single point gives a dot in the middle; nothing gives black. */
  function frame(strokes, options) {
    var f = Object.assign({}, FRAMING, options || {});
    var n = SIZE * f.supersample, scale = f.supersample;
    var covered = new Uint8Array(n * n);
    var pts = [], minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    (strokes || []).forEach(function (stroke) {
      var line = [];
      (stroke || []).forEach(function (p) {
        var x = +p[0], y = +p[1];
        if (!isFinite(x) || !isFinite(y)) return;
        line.push([x, y]);
        minX = Math.min(minX, x); maxX = Math.max(maxX, x);
        minY = Math.min(minY, y); maxY = Math.max(maxY, y);
      });
      if (line.length) pts.push(line);
    });
    var pixels = new Array(PIXELS).fill(f.background);
    if (!pts.length) return pixels;
    var span = SIZE - 2 * f.margin - f.penWidth, w = maxX - minX, h = maxY - minY;
    var sx = w > 0 ? span / w : Infinity, sy = h > 0 ? span / h : Infinity;
    sx = Math.min(sx, sy * f.maxStretch);
    sy = Math.min(sy, sx * f.maxStretch);
    if (!isFinite(sx)) sx = sy = 0;  // a single point
    var cx = (minX + maxX) / 2, cy = (minY + maxY) / 2, r = f.penWidth / 2;
    var r2 = (r * scale) * (r * scale);

    function toSamples(p) {  // drawing units -> supersampled frame coordinates
      return [(SIZE / 2 + (p[0] - cx) * sx) * scale, (SIZE / 2 + (p[1] - cy) * sy) * scale];
    }

    function segment(a, b) {  // mark the samples within r of the segment a-b
      var dx = b[0] - a[0], dy = b[1] - a[1], len2 = dx * dx + dy * dy, pad = r * scale;
      var x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]) - pad)), x1 = Math.min(n - 1, Math.ceil(Math.max(a[0], b[0]) + pad));
      var y0 = Math.max(0, Math.floor(Math.min(a[1], b[1]) - pad)), y1 = Math.min(n - 1, Math.ceil(Math.max(a[1], b[1]) + pad));
      for (var y = y0; y <= y1; y++) {
        var py = y + 0.5 - a[1];
        for (var x = x0; x <= x1; x++) {
          var px = x + 0.5 - a[0];
          var t = len2 > 0 ? Math.max(0, Math.min(1, (px * dx + py * dy) / len2)) : 0;
          var ex = px - t * dx, ey = py - t * dy;
          if (ex * ex + ey * ey <= r2) covered[y * n + x] = 1;
        }
      }
    }

    pts.forEach(function (line) {
      var prev = toSamples(line[0]);
      segment(prev, prev);
      for (var i = 1; i < line.length; i++) {
        var next = toSamples(line[i]);
        segment(prev, next);
        prev = next;
      }
    });
    var per = scale * scale;
    for (var y = 0; y < SIZE; y++) {
      for (var x = 0; x < SIZE; x++) {
        var count = 0;
        for (var v = 0; v < scale; v++) {
          var base = (y * scale + v) * n + x * scale;
          for (var u = 0; u < scale; u++) count += covered[base + u];
        }
        pixels[y * SIZE + x] = Math.round(f.background + (f.ink - f.background) * count / per);
      }
    }
    return pixels;
  }

  // ------------------------------------------------------------------ window.dnnTf

  var api = root.dnnTf || {};
  var layers = null;

  function network() {
    if (!layers) {
      if (!root.dnnTfModel) throw new Error("the weights (weights.js) are not loaded");
      layers = loadModel(root.dnnTfModel);
      blank(layers[0]);
    }
    return layers;
  }

  api.letters = LETTERS;
  api.framing = FRAMING;
  api.frame = frame;
  api.loadModel = loadModel;
  api.forward = forward;
  api.classify = function (pixels) {
    checkPixels(pixels);
    return Array.from(forward(network(), pixels));
  };
  api.load = function () {  // decodes the weights now (classify would on its first call)
    var spec = root.dnnTfModel, net = network();
    api.model = {name: spec.name, dtype: spec.dtype, info: spec.info || {},
                 sizes: [net[0].rows].concat(net.map(function (layer) { return layer.cols; })),
                 bytes: Math.floor(spec.data.length / 4) * 3};
    return api.model;
  };
  root.dnnTf = api;
})(typeof window !== "undefined" ? window : globalThis);
