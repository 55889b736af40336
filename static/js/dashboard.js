// The admin dashboard's charts: data from the page's JSON block (json_script), drawn by Chart.js
// (static/vendor/chartjs). A file, never an inline script: the CSP allows scripts from 'self' only.
"use strict";

(function () {
  const source = document.getElementById("dashboard-data");
  if (!source || typeof window.Chart === "undefined") {
    return;
  }
  const data = JSON.parse(source.textContent);
  const words = data.labels;
  const palette = ["#417690", "#79aec8", "#e0b75a", "#ba2121", "#5b8c5a", "#8a6fb0"];

  const ordersCanvas = document.getElementById("chart-orders");
  if (ordersCanvas) {
    new window.Chart(ordersCanvas, {
      data: {
        labels: data.days,
        datasets: [
          {type: "bar", label: words.placed, data: data.placed, backgroundColor: "#c4dce8", yAxisID: "orders"},
          {type: "bar", label: words.sold, data: data.sold, backgroundColor: palette[0], yAxisID: "orders"},
          {type: "line", label: words.stars, data: data.stars, borderColor: palette[2],
           backgroundColor: palette[2], yAxisID: "stars", tension: 0.2},
        ],
      },
      options: {
        maintainAspectRatio: false,
        plugins: {title: {display: true, text: words.orders_title}},
        scales: {
          orders: {type: "linear", position: "left", beginAtZero: true, ticks: {precision: 0}},
          stars: {type: "linear", position: "right", beginAtZero: true, grid: {drawOnChartArea: false}},
        },
      },
    });
  }

  const moneyCanvas = document.getElementById("chart-money");
  if (moneyCanvas) {
    // Amounts arrive as exact decimal strings; a chart only needs them approximately.
    const datasets = [];
    Object.keys(data.revenue).forEach(function (currency, index) {
      datasets.push({type: "bar", label: words.revenue + " (" + currency + ")",
                     data: data.revenue[currency].map(Number),
                     backgroundColor: palette[(2 * index + 1) % palette.length]});
      datasets.push({type: "line", label: words.net + " (" + currency + ")",
                     data: data.net[currency].map(Number),
                     borderColor: palette[(2 * index + 4) % palette.length],
                     backgroundColor: palette[(2 * index + 4) % palette.length], tension: 0.2});
    });
    new window.Chart(moneyCanvas, {
      data: {labels: data.days, datasets: datasets},
      options: {
        maintainAspectRatio: false,
        plugins: {title: {display: true, text: words.money_title}},
        scales: {y: {beginAtZero: true}},
      },
    });
  }
})();
