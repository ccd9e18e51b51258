// make report's page (expflow_runtime/report_assets/report.js), inlined by
// report.py after the data blob. Hand-written, no library, no network: the
// views read one JSON object and are drawn as SVG markup strings.
//
// One filter drives every view: the FILTER grammar of `make results` (the same
// rules as values.split_keeping_quotes, configs.parse_scalar and
// harvest.parse_filter / matches; tests/test_report.py checks that both agree),
// and the brush of a sweep's parallel coordinates. The table's order decides
// which runs the curves draw first; rows selected in the table are highlighted.
(function () {
  "use strict";

  // ------------------------------------------------------------ FILTER, as make results reads it

  var FILTER_ITEM = /^([^=!<>]+)(=|!=|>=|<=|>|<)([\s\S]*)$/;
  var INT = /^[-+]?[0-9]+$/;
  var FLOAT = /^[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?$/;
  var SPECIAL_FLOATS = [".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
    ".nan", ".NaN", ".NAN"];
  var NULLS = ["", "~", "null", "Null", "NULL"];
  var BOOLS = ["true", "True", "TRUE", "false", "False", "FALSE"];
  var DIGITS = "[0-9](?:_?[0-9])*";
  var PY_FLOAT = new RegExp("^[-+]?(?:(?:" + DIGITS + "(?:\\.(?:" + DIGITS + ")?)?|\\.(?:" + DIGITS + "))" +
    "(?:[eE][-+]?" + DIGITS + ")?|inf|infinity|nan)$", "i");
  var CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
  var LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(^|[^\ud800-\udbff])[\udc00-\udfff]/;

  function FilterError(message) { this.message = message; }

  // Python's repr() of a string, for error messages that read as make's do.
  function pyRepr(text) {
    var quote = text.indexOf("'") >= 0 && text.indexOf('"') < 0 ? '"' : "'";
    var out = "";
    for (var i = 0; i < text.length; i++) {
      var c = text[i], code = text.charCodeAt(i);
      if (c === "\\" || c === quote) { out += "\\" + c; }
      else if (c === "\n") { out += "\\n"; }
      else if (c === "\r") { out += "\\r"; }
      else if (c === "\t") { out += "\\t"; }
      else if (code < 0x20 || (code >= 0x7f && code <= 0xa0) || code === 0xad) {
        out += "\\x" + (code < 16 ? "0" : "") + code.toString(16);
      } else if (code === 0x2028 || code === 0x2029) { out += "\\u" + code.toString(16); }
      else { out += c; }
    }
    return quote + out + quote;
  }

  function isSpace(c) { return /\s/.test(c); }

  // values.split_keeping_quotes: blanks split outside quotes and brackets; quotes stay.
  function splitKeepingQuotes(value) {
    var items = [], current = "", quote = null, escaped = false, depth = 0;
    for (var i = 0; i < value.length; i++) {
      var c = value[i];
      if (escaped) { escaped = false; }
      else if (quote === '"' && c === "\\") { escaped = true; }
      else if (quote === null && isSpace(c) && depth === 0) {
        if (current) { items.push(current); }
        current = "";
        continue;
      } else if ((c === "'" || c === '"') && (quote === null || quote === c)) { quote = quote ? null : c; }
      else if (quote === null && (c === "[" || c === "]")) { depth = Math.max(depth + (c === "[" ? 1 : -1), 0); }
      current += c;
    }
    if (quote) { throw new FilterError("FILTER: unclosed " + quote + " quote"); }
    if (current) { items.push(current); }
    return items;
  }

  // Python's "{:.6g}".format(x) for a finite float.
  function formatG6(x) {
    if (x === 0) { return (1 / x < 0) ? "-0" : "0"; }
    var parts = x.toExponential(5).split("e"), exponent = Number(parts[1]);
    var text;
    if (exponent < -4 || exponent >= 6) {
      var mantissa = parts[0].replace(/\.?0+$/, "");
      text = mantissa + "e" + (exponent < 0 ? "-" : "+") + (Math.abs(exponent) < 10 ? "0" : "") + Math.abs(exponent);
    } else {
      text = x.toFixed(Math.max(0, 5 - exponent));
      if (text.indexOf(".") >= 0) { text = text.replace(/\.?0+$/, ""); }
    }
    return text;
  }

  // Python's repr(x) for a finite float: the shortest digits that read back as
  // x (as toExponential() gives them), fixed notation for exponents -4 to 15.
  function formatRepr(x) {
    if (x === 0) { return (1 / x < 0) ? "-0.0" : "0.0"; }
    var parts = Math.abs(x).toExponential().split("e");
    var digits = parts[0].replace(".", ""), exponent = Number(parts[1]), text;
    if (exponent >= -4 && exponent < 16) {
      if (exponent < 0) {
        text = "0." + "0".repeat(-exponent - 1) + digits;
      } else if (digits.length > exponent + 1) {
        text = digits.slice(0, exponent + 1) + "." + digits.slice(exponent + 1);
      } else {
        text = digits + "0".repeat(exponent + 1 - digits.length) + ".0";
      }
    } else {
      text = digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "") + "e" + (exponent < 0 ? "-" : "+") +
        (Math.abs(exponent) < 10 ? "0" : "") + Math.abs(exponent);
    }
    return (x < 0 ? "-" : "") + text;
  }

  function intText(text) {  // str(int(text)): no sign for positives, no leading zeros
    var negative = text[0] === "-", digits = text.replace(/^[-+]/, "").replace(/^0+(?=[0-9])/, "");
    return (negative && digits !== "0" ? "-" : "") + digits;
  }

  // configs.parse_scalar, then tables.format_value for what is not a string.
  function scalarText(raw, where) {
    var text = raw.trim();
    if (NULLS.indexOf(text) >= 0) { return ""; }
    if (BOOLS.indexOf(text) >= 0) { return text.toLowerCase(); }
    if (INT.test(text)) { return intText(text); }
    if (FLOAT.test(text) && /[.eE]/.test(text)) {
      var number = Number(text);
      return isFinite(number) ? formatRepr(number) : "";
    }
    if (SPECIAL_FLOATS.indexOf(text) >= 0) { return ""; }
    if (text[0] === '"') {
      var value;
      try { value = JSON.parse(text); } catch (e) {
        throw new FilterError(where + ": " + text + " is not a valid double-quoted string");
      }
      if (typeof value !== "string") { throw new FilterError(where + ": " + text + " is not a valid double-quoted string"); }
      if (LONE_SURROGATE.test(value)) { throw new FilterError(where + ": " + text + " is not UTF-8 text"); }
      return value;
    }
    if (text[0] === "'") {
      var match = /^'((?:[^']|'')*)'$/.exec(text);
      if (!match) { throw new FilterError(where + ": " + text + " is not a valid single-quoted string (write ' as '')"); }
      return match[1].replace(/''/g, "'");
    }
    return text;
  }

  // harvest.as_number: Python's float(), or null.
  function asNumber(text) {
    var t = String(text).trim();
    if (!PY_FLOAT.test(t)) { return null; }
    var lower = t.toLowerCase().replace(/^[-+]/, "");
    var sign = t[0] === "-" ? -1 : 1;
    if (lower === "inf" || lower === "infinity") { return sign * Infinity; }
    if (lower === "nan") { return NaN; }
    return Number(t.replace(/_/g, ""));
  }

  // harvest.parse_filter: [[column, op, wanted text]], or a FilterError with make's message.
  function parseFilter(text, names) {
    if (CONTROL.test(text)) {
      throw new FilterError("FILTER=" + pyRepr(text) + ": a value cannot hold a newline, NUL or other control character");
    }
    var items = splitKeepingQuotes(text).map(function (item) {
      var match = FILTER_ITEM.exec(item);
      if (!match) { throw new FilterError("FILTER: expected column=value (or != < > <= >=), got " + pyRepr(item)); }
      return match;
    });
    return items.map(function (match) {
      if (names.indexOf(match[1]) < 0) { throw new FilterError("FILTER: no column " + pyRepr(match[1])); }
      return [match[1], match[2], match[3] ? scalarText(match[3], "FILTER " + match[1]) : ""];
    });
  }

  // harvest.matches: record(column) is the cell's text.
  function matches(record, conditions) {
    for (var i = 0; i < conditions.length; i++) {
      var have = record(conditions[i][0]), op = conditions[i][1], wanted = conditions[i][2];
      var left = asNumber(have), right = asNumber(wanted);
      if (op === "=" || op === "!=") {
        var same = have === wanted || (left !== null && right !== null && left === right);
        if (same !== (op === "=")) { return false; }
      } else if (left === null || right === null || !(
        op === ">" ? left > right : op === "<" ? left < right : op === ">=" ? left >= right : left <= right)) {
        return false;
      }
    }
    return true;
  }

  // ------------------------------------------------------------ the data and what the reader chose

  var data = JSON.parse(document.getElementById("report-data").textContent);
  var names = data.columns.map(function (c) { return c.name; });
  var col = {};
  names.forEach(function (name, i) { col[name] = i; });
  var rows = data.rows;
  var idOf = rows.map(function (row) { return row[col.id]; });
  var rowOf = {};
  idOf.forEach(function (id, i) { rowOf[id] = i; });
  var numericColumn = names.map(function (name, c) {
    var filled = rows.filter(function (r) { return r[c] !== ""; });
    return filled.length > 0 && filled.every(function (r) { return asNumber(r[c]) !== null; });
  });
  var view = {
    conditions: [], order: rows.map(function (_, i) { return i; }), sort: null,
    brush: {}, brushSweep: null, selected: {}, hidden: {}, shown: data.columns.map(function (c) { return c.shown; }),
    axis: "step", lines: data.lines_shown, log: {}, sweep: data.sweeps.length ? data.sweeps[0].name : null,
    sweepMetric: data.primary.metric, visible: [], passing: [], isVisible: {}, plotted: [],
  };
  data.charts.forEach(function (chart) { view.log[chart.name] = chart.log; });
  var anyStep = Object.keys(data.curves).some(function (id) {
    return Object.keys(data.curves[id]).some(function (s) { return data.curves[id][s].step; });
  });
  view.axis = anyStep ? "step" : "epoch";

  function $(id) { return document.getElementById(id); }
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function cell(i, name) { return col[name] === undefined ? "" : rows[i][col[name]]; }

  // ------------------------------------------------------------ sorting and filtering

  // harvest.sort_pairs for one column: numbers as numbers, text as text, empty last; stable.
  function sortBy(column, descending) {
    var c = col[column], numeric = numericColumn[c];
    var filled = view.order.filter(function (i) { return rows[i][c] !== ""; });
    var empty = view.order.filter(function (i) { return rows[i][c] === ""; });
    filled.sort(function (a, b) {
      var x = numeric ? asNumber(rows[a][c]) : rows[a][c], y = numeric ? asNumber(rows[b][c]) : rows[b][c];
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    view.order = filled.concat(empty);
    view.sort = { column: column, descending: descending };
  }

  function inBrush(i) {
    var axes = Object.keys(view.brush);
    if (!axes.length) { return true; }
    if (cell(i, "sweep") !== view.brushSweep) { return false; }
    return axes.every(function (axis) {
      var text = cell(i, axis), kept = view.brush[axis];
      if (kept.cats) { return kept.cats.indexOf(text) >= 0; }
      var value = asNumber(text);
      return value !== null && value >= kept.lo && value <= kept.hi;
    });
  }

  function applyFilter() {
    var input = $("filter"), error = $("filter-error");
    try {
      view.conditions = parseFilter(input.value, names);
      error.hidden = true;
      input.removeAttribute("aria-invalid");
    } catch (e) {
      if (!(e instanceof FilterError)) { throw e; }
      error.textContent = "error: " + e.message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      return;
    }
    refresh();
  }

  function refresh() {
    view.passing = view.order.filter(function (i) {
      return matches(function (name) { return rows[i][col[name]]; }, view.conditions);
    });
    view.visible = view.passing.filter(inBrush);
    view.isVisible = {};
    view.visible.forEach(function (i) { view.isVisible[i] = true; });
    var brushed = Object.keys(view.brush).length;
    $("filter-count").innerHTML = esc(view.visible.length + " of " + rows.length + " runs") +
      (brushed ? ' <button type="button" id="clear-brush">clear brush (' + brushed + ")</button>" : "");
    if (brushed) { $("clear-brush").onclick = function () { view.brush = {}; refresh(); }; }
    drawTable();
    drawCurves();
    drawSweep();
  }

  // ------------------------------------------------------------ overview

  function smallTable(header, body) {
    return '<div class="scroll"><table class="small"><thead><tr>' + header.map(function (h) {
      return "<th>" + esc(h) + "</th>";
    }).join("") + "</tr></thead><tbody>" + body.map(function (r) {
      return "<tr>" + r.map(function (v) { return "<td>" + v + "</td>"; }).join("") + "</tr>";
    }).join("") + "</tbody></table></div>";
  }

  function runLink(id) { return '<a href="#curves" class="run-link" data-run="' + esc(id) + '">' + esc(id) + "</a>"; }

  function drawOverview() {
    var o = data.overview;
    $("written").textContent = rows.length + " experiments; written " + data.written + " by make report.";
    $("states").innerHTML = o.states.map(function (pair) {
      return '<button type="button" class="state ' + esc(pair[0]) + '" data-state="' + esc(pair[0]) +
        '" title="Filter: state=' + esc(pair[0]) + '"><b>' + pair[1] + "</b>" + esc(pair[0] || "(none)") + "</button>";
    }).join("");
    $("states").onclick = function (event) {
      var button = event.target.closest("button[data-state]");
      if (button) { $("filter").value = "state=" + button.dataset.state; applyFilter(); }
    };
    var best = o.best, html = "<h3>Best runs" + (best.metric ? " by " + esc(best.metric) + " (" + best.mode + ")" : "") +
      "</h3>";
    if (!best.ids.length) {
      html += '<p class="empty">' + (best.metric ? "No run has " + esc(best.metric) + " yet." :
        "No PRIMARY_METRIC in settings.env: set it to rank the runs.") + "</p>";
    } else {
      html += smallTable(["rank", "id", best.metric, "state"], best.ids.map(function (id, rank) {
        return [rank + 1, runLink(id), '<span class="num">' + esc(cell(rowOf[id], best.metric)) + "</span>",
          esc(cell(rowOf[id], "state"))];
      }));
      best.compare.forEach(function (section) {
        if (!section[1].length) { return; }
        html += "<h3>" + esc(section[0]) + "</h3>" + smallTable(["key"].concat(best.ids), section[1].map(function (line) {
          return [esc(line[0])].concat(line[1].map(esc));
        }));
      });
    }
    $("best").innerHTML = html;
    var failures = "<h3>Failures</h3>";
    if (!o.failures.length) { failures += '<p class="empty">None.</p>'; }
    failures += o.failures.map(function (f) {
      return '<details class="failure"' + (o.failures.length <= 3 ? " open" : "") + "><summary>" + runLink(f.id) + " " +
        esc(f.state) + (f.exit_code !== "" ? ", exit code " + esc(f.exit_code) : "") +
        (f.elapsed ? ", after " + esc(f.elapsed) : "") + (f.log ? ' <code class="meta">' + esc(f.log) + "</code>" : "") +
        "</summary><pre>" + (f.tail.length ? esc(f.tail.join("\n")) : "(no log)") + "</pre></details>";
    }).join("");
    if (o.failures_left_out) { failures += '<p class="meta">' + o.failures_left_out + " more failures: filter the table.</p>"; }
    $("failures").innerHTML = failures;
  }

  // ------------------------------------------------------------ the table

  function drawTableControls() {
    var menu = '<details class="menu"><summary>Columns</summary><div class="items">' + names.map(function (name, c) {
      return '<label><input type="checkbox" data-column="' + c + '"' + (view.shown[c] ? " checked" : "") + "> " +
        esc(name) + "</label>";
    }).join("") + "</div></details>";
    $("table-controls").innerHTML = menu + '<button type="button" id="select-none">Clear selection</button>' +
      '<span class="meta">Click a header to sort, a row to select it (its curves are highlighted), an id to see them.</span>';
    $("table-controls").onchange = function (event) {
      var c = event.target.dataset.column;
      if (c !== undefined) { view.shown[Number(c)] = event.target.checked; drawTable(); }
    };
    $("select-none").onclick = function () { view.selected = {}; refresh(); };
  }

  function drawTable() {
    var shown = names.map(function (_, c) { return c; }).filter(function (c) { return view.shown[c]; });
    $("results").tHead.innerHTML = "<tr>" + shown.map(function (c) {
      var sort = view.sort && view.sort.column === names[c] ? (view.sort.descending ? "descending" : "ascending") : "";
      return '<th class="' + data.columns[c].kind + '" data-column="' + c + '"' +
        (sort ? ' aria-sort="' + sort + '"' : "") + ">" + esc(names[c]) + "</th>";
    }).join("") + "</tr>";
    $("results").tBodies[0].innerHTML = view.visible.map(function (i) {
      var row = rows[i];
      return '<tr data-i="' + i + '"' + (view.selected[idOf[i]] ? ' class="selected"' : "") + ">" + shown.map(function (c) {
        var text = row[c];
        if (c === col.id) { return "<td>" + runLink(text) + "</td>"; }
        var classes = (numericColumn[c] ? "n" : "") + (c === col.state ? " " + text : "");
        return (classes ? '<td class="' + esc(classes) + '">' : "<td>") + esc(text) + "</td>";
      }).join("") + "</tr>";
    }).join("");
  }

  function onTableClick(event) {
    var th = event.target.closest("th[data-column]");
    if (th) {
      var name = names[Number(th.dataset.column)];
      sortBy(name, view.sort && view.sort.column === name ? !view.sort.descending : false);
      refresh();
      return;
    }
    var tr = event.target.closest("tr[data-i]");
    if (tr && !event.target.closest("a")) { toggleSelected(idOf[Number(tr.dataset.i)]); }
  }

  function toggleSelected(id) {
    if (view.selected[id]) { delete view.selected[id]; } else { view.selected[id] = true; }
    refresh();
  }

  // ------------------------------------------------------------ scales, ticks, numbers

  function fmt(v) {
    if (v === 0) { return "0"; }
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) { return v.toExponential(1).replace("e+", "e"); }
    return String(Number(v.toPrecision(4)));
  }

  function linearTicks(lo, hi, count) {
    var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = count / span * step;
    step *= err <= 0.15 ? 10 : err <= 0.35 ? 5 : err <= 0.75 ? 2 : 1;
    var ticks = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) { ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t); }
    return ticks;
  }

  function logTicks(lo, hi) {
    var ticks = [], a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
    var steps = b - a <= 2 ? [1, 2, 5] : [1];
    for (var e = a; e <= b; e++) {
      steps.forEach(function (s) { var t = s * Math.pow(10, e); if (t >= lo && t <= hi) { ticks.push(t); } });
    }
    return ticks;
  }

  // A scale over values: numeric (log when asked and all positive) or categorical.
  function makeScale(values, r0, r1, log, categorical) {
    if (categorical) {
      var cats = values.filter(function (v, i) { return values.indexOf(v) === i; }).sort(function (a, b) {
        var x = asNumber(a), y = asNumber(b);
        return x !== null && y !== null ? x - y : a < b ? -1 : a > b ? 1 : 0;
      });
      var band = (r1 - r0) / Math.max(cats.length, 1);
      return { cats: cats, band: band, at: function (v) { var k = cats.indexOf(v); return k < 0 ? null : r0 + band * (k + 0.5); },
        ticks: cats.map(function (c) { return [r0 + band * (cats.indexOf(c) + 0.5), c]; }) };
    }
    var nums = values.filter(function (v) { return isFinite(v) && (!log || v > 0); });
    var lo = Math.min.apply(null, nums), hi = Math.max.apply(null, nums);
    if (!nums.length) { lo = 0; hi = 1; }
    if (log) {
      var l0 = Math.log10(lo), l1 = Math.log10(hi), pad = (l1 - l0 || 1) * 0.04;
      l0 -= pad; l1 += pad;
      return { log: true, at: function (v) { return v > 0 ? r0 + (Math.log10(v) - l0) / (l1 - l0) * (r1 - r0) : null; },
        invert: function (p) { return Math.pow(10, l0 + (p - r0) / (r1 - r0) * (l1 - l0)); },
        ticks: logTicks(Math.pow(10, l0), Math.pow(10, l1)).map(function (t) { return [r0 + (Math.log10(t) - l0) / (l1 - l0) * (r1 - r0), fmt(t)]; }) };
    }
    var span = hi - lo || Math.abs(hi) || 1;
    lo -= span * 0.04; hi += span * 0.04;
    return { at: function (v) { return isFinite(v) ? r0 + (v - lo) / (hi - lo) * (r1 - r0) : null; },
      invert: function (p) { return lo + (p - r0) / (r1 - r0) * (hi - lo); },
      ticks: linearTicks(lo, hi, 5).map(function (t) { return [r0 + (t - lo) / (hi - lo) * (r1 - r0), fmt(t)]; }) };
  }

  // ------------------------------------------------------------ curves

  var decoded = {};
  function axisValues(enc, count) {
    if (!enc) { return null; }
    if (Array.isArray(enc)) { return enc; }
    var out = new Array(enc.count);
    for (var i = 0; i < enc.count; i++) { out[i] = enc.start + enc.step * i; }
    return out.length === count ? out : null;
  }

  // [[x, y]] of one run's curve, x by the axis chosen (else the other, else the row).
  function curve(id, chart) {
    var key = id + "\u0000" + chart.name + "\u0000" + view.axis;
    if (decoded[key]) { return decoded[key]; }
    var stage = (data.curves[id] || {})[chart.stage];
    var ys = stage && stage.metrics[chart.metric];
    var line = [];
    if (ys) {
      var other = view.axis === "step" ? "epoch" : "step";
      var xs = axisValues(stage[view.axis], ys.length) || axisValues(stage[other], ys.length);
      for (var i = 0; i < ys.length; i++) {
        var x = xs && xs[i] !== null ? xs[i] : i;
        if (ys[i] !== null) { line.push([x, ys[i]]); }
      }
    }
    decoded[key] = line;
    return line;
  }

  function plottedRuns() {
    var withCurves = view.visible.filter(function (i) { return data.curves[idOf[i]]; });
    var first = view.lines === "all" ? withCurves : withCurves.slice(0, Number(view.lines));
    var extra = withCurves.filter(function (i) { return view.selected[idOf[i]] && first.indexOf(i) < 0; });
    return first.concat(extra).map(function (i) { return idOf[i]; });
  }

  function colourClass(k) { return "c" + (k % 8) + " d" + (Math.floor(k / 8) % 3); }

  function drawCurveControls() {
    var lines = [10, 20, 50, 100, 200, "all"];
    if (lines.indexOf(view.lines) < 0) { lines.unshift(view.lines); }
    $("curve-controls").innerHTML = '<label>x <select id="x-axis"><option value="step">step</option>' +
      '<option value="epoch">epoch</option></select></label>' +
      '<label>runs drawn: the table\'s first <select id="lines">' + lines.map(function (n) {
        return "<option" + (String(n) === String(view.lines) ? " selected" : "") + ">" + n + "</option>";
      }).join("") + '</select></label><span class="meta">and every selected run; click a run\'s name to hide or show it.</span>';
    $("x-axis").value = view.axis;
    $("x-axis").onchange = function (event) { view.axis = event.target.value; drawCurves(); };
    $("lines").onchange = function (event) { view.lines = event.target.value; drawCurves(); };
  }

  var W = 560, H = 300, M = { l: 58, r: 14, t: 10, b: 34 };

  // The points to draw: past one per half pixel, each pixel column's first, lowest and highest (display only).
  function thin(points, sx) {
    if (points.length <= 2 * (W - M.l - M.r)) { return points; }
    var out = [], column = null, lo = null, hi = null;
    points.forEach(function (p) {
      var c = Math.round(sx(p[0]));
      if (c !== column) {
        if (lo) { out.push(lo); if (hi !== lo) { out.push(hi); } }
        column = c; out.push(p); lo = hi = p;
      } else {
        if (p[1] < lo[1]) { lo = p; }
        if (p[1] > hi[1]) { hi = p; }
      }
    });
    if (lo) { out.push(lo); if (hi !== lo) { out.push(hi); } }
    return out;
  }

  function axesMarkup(sx, sy, xLabel, yLabel) {
    var out = "";
    sy.ticks.forEach(function (t) {
      out += '<line class="grid" x1="' + M.l + '" x2="' + (W - M.r) + '" y1="' + t[0].toFixed(1) + '" y2="' + t[0].toFixed(1) + '"/>' +
        '<text x="' + (M.l - 6) + '" y="' + (t[0] + 4).toFixed(1) + '" text-anchor="end">' + esc(t[1]) + "</text>";
    });
    sx.ticks.forEach(function (t) {
      out += '<line class="axis" x1="' + t[0].toFixed(1) + '" x2="' + t[0].toFixed(1) + '" y1="' + (H - M.b) + '" y2="' + (H - M.b + 4) + '"/>' +
        '<text x="' + t[0].toFixed(1) + '" y="' + (H - M.b + 16) + '" text-anchor="middle">' + esc(t[1]) + "</text>";
    });
    out += '<line class="axis" x1="' + M.l + '" x2="' + (W - M.r) + '" y1="' + (H - M.b) + '" y2="' + (H - M.b) + '"/>' +
      '<text x="' + (W - M.r) + '" y="' + (H - 3) + '" text-anchor="end">' + esc(xLabel) + "</text>";
    if (yLabel) { out += '<text x="' + M.l + '" y="' + (M.t - 1) + '">' + esc(yLabel) + "</text>"; }
    return out;
  }

  function drawLegend(ids) {
    $("legend").innerHTML = ids.map(function (id, k) {
      return '<button type="button" data-run="' + esc(id) + '" aria-pressed="' + !view.hidden[id] + '"' +
        (view.selected[id] ? ' class="selected"' : "") + '><svg viewBox="0 0 22 8" aria-hidden="true"><line class="run ' +
        colourClass(k) + '" x1="1" x2="21" y1="4" y2="4"/></svg>' + esc(id) + "</button>";
    }).join("");
  }

  function drawCurves() {
    if (!data.charts.length) {
      $("charts").innerHTML = '<p class="empty">No experiment has written metrics (EXPFLOW_METRICS) yet.</p>';
      return;
    }
    var ids = plottedRuns(), anySelected = ids.some(function (id) { return view.selected[id]; });
    drawLegend(ids);
    if (data.curves_left_out) {
      $("legend").insertAdjacentHTML("beforeend", '<span class="meta">This file holds the curves of the best ' +
        Object.keys(data.curves).length + " runs; those of " + data.curves_left_out + " more are left out " +
        "(make report FILTER=... writes a report of fewer runs).</span>");
    }
    $("charts").innerHTML = data.charts.map(function (chart, n) {
      var lines = ids.map(function (id) { return curve(id, chart); });
      var shownLines = lines.filter(function (_, k) { return !view.hidden[ids[k]]; });
      var xs = [], ys = [];
      shownLines.forEach(function (l) { l.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
      var log = view.log[chart.name] && ys.every(function (y) { return y > 0; });
      var sx = makeScale(xs.length ? [Math.min.apply(null, xs), Math.max.apply(null, xs)] : [0, 1], M.l, W - M.r, false);
      var sy = makeScale(ys.length ? [Math.min.apply(null, ys), Math.max.apply(null, ys)] : [0, 1], H - M.b, M.t, log);
      var paths = lines.map(function (line, k) {
        var id = ids[k], d = thin(line, sx.at).map(function (p, j) {
          var y = sy.at(p[1]);
          return (j ? "L" : "M") + sx.at(p[0]).toFixed(1) + " " + (y === null ? H - M.b : y).toFixed(1);
        }).join("");
        var classes = "run " + colourClass(k) + (view.hidden[id] ? " hidden" : "") +
          (anySelected ? (view.selected[id] ? " hot" : " faded") : "");
        return '<path class="' + classes + '" data-run="' + esc(id) + '" d="' + d + '"/>';
      });
      // selected runs last, so that they are drawn on top
      paths = paths.filter(function (_, k) { return !view.selected[ids[k]]; }).concat(
        paths.filter(function (_, k) { return view.selected[ids[k]]; }));
      return '<figure class="chart" data-chart="' + n + '"><header><h3>' + esc(chart.name) + "</h3>" +
        '<label class="meta"><input type="checkbox" data-log="' + n + '"' + (view.log[chart.name] ? " checked" : "") +
        "> log scale</label></header>" + '<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="' +
        esc(chart.name + " by " + view.axis) + '">' + axesMarkup(sx, sy, view.axis, "") + paths.join("") +
        '<line class="cursor" y1="' + M.t + '" y2="' + (H - M.b) + '" x1="-10" x2="-10"/></svg></figure>';
    }).join("");
    view.plotted = ids;
  }

  function onLegendClick(event) {
    var button = event.target.closest("button[data-run]");
    if (!button) { return; }
    var id = button.dataset.run;
    if (view.hidden[id]) { delete view.hidden[id]; } else { view.hidden[id] = true; }
    drawCurves();
  }

  // The value under the pointer: each drawn run's point nearest in x, the nearest in y first.
  function onChartMove(event) {
    var figure = event.target.closest("figure[data-chart]");
    if (!figure) { hideTip(); return; }
    var svg = figure.querySelector("svg"), box = svg.getBoundingClientRect();
    var px = (event.clientX - box.left) * W / box.width, py = (event.clientY - box.top) * H / box.height;
    var chart = data.charts[Number(figure.dataset.chart)];
    var found = [];
    var paths = svg.querySelectorAll("path.run:not(.hidden)");
    var xs = [], ys = [];
    view.plotted.forEach(function (id) {
      if (view.hidden[id]) { return; }
      curve(id, chart).forEach(function (p) { xs.push(p[0]); ys.push(p[1]); });
    });
    if (!xs.length) { return; }
    var log = view.log[chart.name] && ys.every(function (y) { return y > 0; });
    var sx = makeScale([Math.min.apply(null, xs), Math.max.apply(null, xs)], M.l, W - M.r, false);
    var sy = makeScale([Math.min.apply(null, ys), Math.max.apply(null, ys)], H - M.b, M.t, log);
    view.plotted.forEach(function (id, k) {
      if (view.hidden[id]) { return; }
      var best = null;
      curve(id, chart).forEach(function (p) {
        var dx = Math.abs(sx.at(p[0]) - px);
        if (!best || dx < best.dx) { best = { dx: dx, p: p }; }
      });
      if (best && best.dx < 40) { found.push({ id: id, k: k, x: best.p[0], y: best.p[1], dy: Math.abs(sy.at(best.p[1]) - py) }); }
    });
    if (!found.length) { hideTip(); return; }
    var hot = found.reduce(function (a, b) { return b.dy < a.dy ? b : a; });
    var cursor = svg.querySelector(".cursor");
    cursor.setAttribute("x1", sx.at(hot.x)); cursor.setAttribute("x2", sx.at(hot.x));
    cursor.classList.add("on");
    Array.prototype.forEach.call(paths, function (p) { p.classList.toggle("hot", p.dataset.run === hot.id || !!view.selected[p.dataset.run]); });
    found.sort(function (a, b) { return b.y - a.y; });
    var listed = found.slice(0, 12);
    if (listed.indexOf(hot) < 0) { listed[listed.length - 1] = hot; }
    showTip(event, "<b>" + esc(chart.name) + "</b> at " + esc(view.axis) + " " + esc(hot.x) + "<table>" + listed.map(function (f) {
      return "<tr" + (f === hot ? ' class="hot"' : "") + '><td><svg class="sw" viewBox="0 0 10 3"><line class="run ' +
        colourClass(f.k) + '" x1="0" x2="10" y1="1.5" y2="1.5" style="stroke-width:3"/></svg></td><td>' + esc(f.id) +
        '</td><td class="n">' + esc(f.y) + "</td></tr>";
    }).join("") + "</table>" + (found.length > listed.length ? '<span class="meta">' + (found.length - listed.length) + " more</span>" : ""));
  }

  function showTip(event, html) {
    var tip = $("tip");
    tip.innerHTML = html;
    tip.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth) { x = event.clientX - tip.offsetWidth - 14; }
    if (y + tip.offsetHeight > window.innerHeight) { y = event.clientY - tip.offsetHeight - 14; }
    tip.style.left = Math.max(0, x) + "px";
    tip.style.top = Math.max(0, y) + "px";
  }

  function hideTip() {
    $("tip").hidden = true;
    Array.prototype.forEach.call(document.querySelectorAll("#charts .cursor.on"), function (c) { c.classList.remove("on"); });
    Array.prototype.forEach.call(document.querySelectorAll("#charts path.run.hot"), function (p) {
      if (!view.selected[p.dataset.run]) { p.classList.remove("hot"); }
    });
  }

  // ------------------------------------------------------------ sweeps: scatter per parameter, parallel coordinates

  var SEQUENTIAL = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];  // viridis
  function sequential(t) {
    // 0.1 to 0.85 of the scale: its darkest and lightest ends vanish on a dark or a light page
    var s = (0.1 + 0.75 * Math.max(0, Math.min(1, t))) * (SEQUENTIAL.length - 1), k = Math.min(Math.floor(s), SEQUENTIAL.length - 2);
    var f = s - k, a = SEQUENTIAL[k], b = SEQUENTIAL[k + 1];
    return "rgb(" + a.map(function (v, j) { return Math.round(v + (b[j] - v) * f); }).join(",") + ")";
  }

  var pcScales = {};  // axis -> {scale, x} of the parallel coordinates drawn last

  function axisScale(name, ids, r0, r1) {
    var texts = ids.map(function (i) { return cell(i, name); }).filter(function (t) { return t !== ""; });
    var categorical = !texts.every(function (t) { return asNumber(t) !== null && isFinite(asNumber(t)); });
    var nums = categorical ? [] : texts.map(asNumber);
    var log = !categorical && nums.length > 1 && nums.every(function (v) { return v > 0; }) &&
      Math.max.apply(null, nums) / Math.min.apply(null, nums) >= 100;
    var scale = makeScale(categorical ? texts : nums, r0, r1, log, categorical);
    return { categorical: categorical, log: log, place: function (i) {
      var t = cell(i, name);
      return t === "" ? null : scale.at(categorical ? t : asNumber(t));
    }, ticks: scale.ticks,
      // what a brush from pixel y0 to y1 keeps: categories, or a range of values
      kept: function (y0, y1) {
        if (categorical) { return { cats: scale.cats.filter(function (c) { var y = scale.at(c); return y >= y0 && y <= y1; }) }; }
        var a = scale.invert(y0), b = scale.invert(y1);
        return { lo: Math.min(a, b), hi: Math.max(a, b) };
      },
      // where the brush that keeps that is drawn
      span: function (kept) {
        var ys = kept.cats ? kept.cats.map(scale.at).filter(function (y) { return y !== null; }) : [scale.at(kept.lo), scale.at(kept.hi)];
        if (!ys.length) { return null; }
        var pad = kept.cats ? Math.abs(scale.band) / 2 : 0;
        return [Math.min.apply(null, ys) - pad, Math.max.apply(null, ys) + pad];
      } };
  }

  function sweepMetrics() {
    return names.filter(function (n) { return data.columns[col[n]].kind === "metrics" && numericColumn[col[n]]; });
  }

  function drawSweepControls() {
    if (!data.sweeps.length) {
      $("sweep-view").innerHTML = '<p class="empty">No sweeps (make sweep SWEEP=configs/....yaml) among these runs.</p>';
      return false;
    }
    var metrics = sweepMetrics();
    if (metrics.indexOf(view.sweepMetric) < 0) { view.sweepMetric = metrics[0]; }
    $("sweep-view").innerHTML = '<div class="controls"><label>sweep <select id="sweep-name">' + data.sweeps.map(function (s) {
      return "<option>" + esc(s.name) + "</option>";
    }).join("") + '</select></label><label>metric <select id="sweep-metric">' + metrics.map(function (m) {
      return "<option>" + esc(m) + "</option>";
    }).join("") + '</select></label><span class="meta">Drag along an axis of the parallel coordinates to keep the runs ' +
      "that pass there (the table and the curves follow); click an axis to clear it.</span></div>" +
      '<div id="sweep-charts"></div>';
    $("sweep-name").value = view.sweep;
    $("sweep-metric").value = view.sweepMetric || "";
    $("sweep-name").onchange = function (event) { view.sweep = event.target.value; view.brush = {}; refresh(); };
    $("sweep-metric").onchange = function (event) { view.sweepMetric = event.target.value; view.brush = {}; refresh(); };
    return true;
  }

  var SW = 320, SH = 220, SM = { l: 52, r: 10, t: 10, b: 44 };

  function scatter(param, ids, metric, anySelected) {
    var sx = axisScale(param, ids, SM.l, SW - SM.r), sy = axisScale(metric, ids, SH - SM.b, SM.t);
    var dots = ids.map(function (i) {
      var x = sx.place(i), y = sy.place(i);
      if (x === null || y === null) { return ""; }
      if (sx.categorical) { x += ((i * 2654435761) % 1000 / 1000 - 0.5) * 14; }  // a fixed jitter within the category
      var brushed = view.isVisible[i];
      return '<circle class="dot c0' + (view.selected[idOf[i]] ? " hot" : anySelected || !brushed ? " faded" : "") +
        '" r="4" cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) + '" data-i="' + i + '"/>';
    }).join("");
    var ticks = sx.ticks.length > 8 && sx.categorical ? sx.ticks.filter(function (_, k) { return k % Math.ceil(sx.ticks.length / 8) === 0; }) : sx.ticks;
    var axes = "";
    sy.ticks.forEach(function (t) {
      axes += '<line class="grid" x1="' + SM.l + '" x2="' + (SW - SM.r) + '" y1="' + t[0].toFixed(1) + '" y2="' + t[0].toFixed(1) + '"/>' +
        '<text x="' + (SM.l - 5) + '" y="' + (t[0] + 4).toFixed(1) + '" text-anchor="end">' + esc(t[1]) + "</text>";
    });
    ticks.forEach(function (t) {
      axes += '<text x="' + t[0].toFixed(1) + '" y="' + (SH - SM.b + 15) + '" text-anchor="middle">' + esc(String(t[1]).slice(0, 12)) + "</text>";
    });
    axes += '<line class="axis" x1="' + SM.l + '" x2="' + (SW - SM.r) + '" y1="' + (SH - SM.b) + '" y2="' + (SH - SM.b) + '"/>' +
      '<text class="title" x="' + ((SW + SM.l) / 2) + '" y="' + (SH - 8) + '" text-anchor="middle">' + esc(param) +
      (sx.log ? " (log)" : sx.categorical ? " (categories)" : "") + "</text>";
    return '<figure class="chart scatter"><svg viewBox="0 0 ' + SW + " " + SH + '" role="img" aria-label="' +
      esc(metric + " by " + param) + '">' + axes + dots + "</svg></figure>";
  }

  var PW = 1000, PH = 320, PM = { l: 60, r: 60, t: 28, b: 30 };

  function parallel(sweep, ids, metric) {
    var axes = sweep.params.concat([metric]);
    var step = (PW - PM.l - PM.r) / Math.max(axes.length - 1, 1);
    pcScales = {};
    axes.forEach(function (a, k) {
      pcScales[a] = axisScale(a, ids, PH - PM.b, PM.t);
      pcScales[a].x = PM.l + step * k;
    });
    var metricValues = ids.map(function (i) { return asNumber(cell(i, metric)); }).filter(function (v) { return v !== null && isFinite(v); });
    var lo = Math.min.apply(null, metricValues), hi = Math.max.apply(null, metricValues);
    var lines = ids.map(function (i) {
      var places = axes.map(function (a) { return pcScales[a].place(i); });
      if (places.some(function (p) { return p === null; })) { return ""; }
      var value = asNumber(cell(i, metric)), out = !inBrush(i);
      return '<path class="pc' + (out ? " out" : "") + (view.selected[idOf[i]] ? " hot" : "") + '" data-i="' + i + '"' +
        (out ? "" : ' style="stroke:' + sequential(hi > lo ? (value - lo) / (hi - lo) : 0.5) + '"') + ' d="' +
        places.map(function (p, k) { return (k ? "L" : "M") + pcScales[axes[k]].x.toFixed(1) + " " + p.toFixed(1); }).join("") + '"/>';
    });
    // the runs kept by the brush last, so that they are drawn on top
    lines = lines.filter(function (l) { return l.indexOf("pc out") >= 0; }).concat(lines.filter(function (l) { return l.indexOf("pc out") < 0; }));
    var markup = axes.map(function (a) {
      var s = pcScales[a], brush = view.brush[a] && s.span(view.brush[a]), ticks = s.ticks;
      if (ticks.length > 10) { ticks = ticks.filter(function (_, k) { return k % Math.ceil(ticks.length / 10) === 0; }); }
      return '<g class="pc-axis" data-axis="' + esc(a) + '"><rect class="pc-hit" x="' + (s.x - 14) + '" y="' + PM.t +
        '" width="28" height="' + (PH - PM.t - PM.b) + '"/><line class="axis" x1="' + s.x + '" x2="' + s.x + '" y1="' + PM.t +
        '" y2="' + (PH - PM.b) + '"/>' + ticks.map(function (t) {
          return '<text x="' + (s.x - 5) + '" y="' + (t[0] + 4).toFixed(1) + '" text-anchor="end">' + esc(String(t[1]).slice(0, 10)) + "</text>";
        }).join("") + '<text class="title" x="' + s.x + '" y="' + (PM.t - 12) + '" text-anchor="middle">' + esc(a) + "</text>" +
        (brush ? '<rect class="brush" x="' + (s.x - 9) + '" y="' + brush[0].toFixed(1) + '" width="18" height="' +
          Math.max(1, brush[1] - brush[0]).toFixed(1) + '"/>' : "") + "</g>";
    }).join("");
    return '<figure class="chart parallel"><header><h3>Parallel coordinates: ' + esc(sweep.name) + "</h3></header>" +
      '<svg id="pc"' + (ids.length > 200 ? ' class="many"' : "") + ' viewBox="0 0 ' + PW + " " + PH + '" role="img" aria-label="parallel coordinates of ' + esc(sweep.name) +
      '">' + lines.join("") + markup + "</svg></figure>";
  }

  function drawSweep() {
    if (!data.sweeps.length) { return; }
    var sweep = data.sweeps.filter(function (s) { return s.name === view.sweep; })[0];
    var ids = view.passing.filter(function (i) { return cell(i, "sweep") === sweep.name; });
    var metric = view.sweepMetric;
    var target = $("sweep-charts");
    if (!metric || !ids.length) {
      target.innerHTML = '<p class="empty">' + (ids.length ? "No numeric metric yet." : "No run of this sweep passes the filter.") + "</p>";
      pcScales = {};
      return;
    }
    var anySelected = ids.some(function (i) { return view.selected[idOf[i]]; });
    target.innerHTML = "<h3>" + esc(metric) + " by each swept parameter (" + ids.length + " runs)</h3>" +
      '<div class="sweep-grid">' + sweep.params.filter(function (p) { return col[p] !== undefined; }).map(function (p) {
        return scatter(p, ids, metric, anySelected);
      }).join("") + "</div>" + parallel(sweep, ids, metric);
  }

  // Brushing: drag along an axis; a click without a drag clears that axis.
  var dragging = null;
  function svgY(svg, event) { var box = svg.getBoundingClientRect(); return (event.clientY - box.top) * PH / box.height; }
  function onBrushStart(event) {
    var g = event.target.closest("g.pc-axis");
    if (!g) { return; }
    event.preventDefault();
    var svg = g.ownerSVGElement, y = svgY(svg, event);
    dragging = { axis: g.dataset.axis, svg: svg, y0: y, y1: y };
  }
  function onBrushMove(event) {
    if (!dragging) { return; }
    dragging.y1 = svgY(dragging.svg, event);
    var rect = dragging.svg.querySelector('g[data-axis="' + CSS.escape(dragging.axis) + '"] rect.brush');
    if (!rect) {
      rect = dragging.svg.querySelector('g[data-axis="' + CSS.escape(dragging.axis) + '"]').appendChild(
        document.createElementNS(dragging.svg.namespaceURI, "rect"));
      rect.setAttribute("class", "brush");
      rect.setAttribute("x", pcScales[dragging.axis].x - 9);
      rect.setAttribute("width", 18);
    }
    rect.setAttribute("y", Math.min(dragging.y0, dragging.y1));
    rect.setAttribute("height", Math.abs(dragging.y1 - dragging.y0));
  }
  function onBrushEnd() {
    if (!dragging) { return; }
    var d = dragging;
    dragging = null;
    if (Math.abs(d.y1 - d.y0) < 3) { delete view.brush[d.axis]; }
    else { view.brush[d.axis] = pcScales[d.axis].kept(Math.min(d.y0, d.y1), Math.max(d.y0, d.y1)); }
    view.brushSweep = view.sweep;
    refresh();
  }

  function onSweepHover(event) {
    var mark = event.target.closest("circle[data-i], path.pc[data-i]");
    if (!mark) { $("tip").hidden = true; return; }
    var i = Number(mark.dataset.i), sweep = data.sweeps.filter(function (s) { return s.name === view.sweep; })[0];
    showTip(event, "<b>" + esc(idOf[i]) + "</b><table>" + sweep.params.concat([view.sweepMetric]).map(function (p) {
      return "<tr><td>" + esc(p) + '</td><td class="n">' + esc(cell(i, p)) + "</td></tr>";
    }).join("") + "</table>");
  }

  // ------------------------------------------------------------ wiring

  function showRun(event) {
    var link = event.target.closest("a.run-link");
    if (!link) { return; }
    var id = link.dataset.run;
    view.selected[id] = true;
    delete view.hidden[id];
    refresh();
  }

  function start() {
    $("title").textContent = data.title;
    if (data.sort) { sortBy(data.sort.column, data.sort.descending); }
    drawOverview();
    drawTableControls();
    drawCurveControls();
    if (!drawSweepControls()) { $("nav-sweeps").classList.add("meta"); }
    refresh();
    var timer = null;
    $("filter").addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(applyFilter, 120); });
    $("filter").addEventListener("keydown", function (event) { if (event.key === "Enter") { clearTimeout(timer); applyFilter(); } });
    $("results").addEventListener("click", onTableClick);
    $("legend").addEventListener("click", onLegendClick);
    $("charts").addEventListener("mousemove", onChartMove);
    $("charts").addEventListener("mouseleave", hideTip);
    $("charts").addEventListener("change", function (event) {
      var n = event.target.dataset.log;
      if (n !== undefined) { view.log[data.charts[Number(n)].name] = event.target.checked; drawCurves(); }
    });
    $("sweep-view").addEventListener("mousedown", onBrushStart);
    $("sweep-view").addEventListener("mousemove", onSweepHover);
    $("sweep-view").addEventListener("mouseleave", function () { $("tip").hidden = true; });
    $("sweep-view").addEventListener("click", function (event) {
      var dot = event.target.closest("circle[data-i]");
      if (dot) { toggleSelected(idOf[Number(dot.dataset.i)]); }
    });
    window.addEventListener("mousemove", onBrushMove);
    window.addEventListener("mouseup", onBrushEnd);
    document.addEventListener("click", showRun);
    // printed, every failure shows its log's last lines
    window.addEventListener("beforeprint", function () {
      Array.prototype.forEach.call(document.querySelectorAll("details.failure:not([open])"), function (d) {
        d.setAttribute("open", ""); d.setAttribute("data-closed", "");
      });
    });
    window.addEventListener("afterprint", function () {
      Array.prototype.forEach.call(document.querySelectorAll("details[data-closed]"), function (d) {
        d.removeAttribute("open"); d.removeAttribute("data-closed");
      });
    });
    // usable: drawn and painted (bench/report_bench.py reads this mark)
    requestAnimationFrame(function () {
      setTimeout(function () { document.documentElement.setAttribute("data-ready", performance.now().toFixed(1)); }, 0);
    });
  }

  window.expflowReport = { parseFilter: parseFilter, matches: matches, asNumber: asNumber, formatG6: formatG6, formatRepr: formatRepr,
    FilterError: FilterError, view: view };
  start();
})();
