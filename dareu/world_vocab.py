"""Word pools for the fictitious-author world. Everything here is invented for DareU."""

import random

SYLLABLES = ["ka", "ro", "vel", "mar", "thi", "lo", "dra", "wyn", "esk", "ba", "nor", "ilu", "qen", "sa",
             "tor", "fen", "ry", "ost", "mi", "gal", "hur", "zo", "pel", "an", "vek", "oru", "lis", "dem",
             "ya", "cor", "bri", "ush", "ne", "tal", "fi", "gor", "ama", "sel", "kri", "obu"]

TOWN_SUFFIXES = ["mouth", "ford", "vale", "haven", "wick", "moor", "field", "bridge", "stead", "holm"]

GENRES = ["mystery", "science fiction", "historical fiction", "poetry", "fantasy", "romance", "horror",
          "travelogues", "satire", "crime fiction", "biography", "children's fiction"]

OCCUPATIONS = ["lighthouse keeper", "cartographer", "locksmith", "baker", "clockmaker", "shipwright",
               "beekeeper", "glassblower", "librarian", "ferry pilot", "stonemason", "tailor",
               "astronomer", "botanist", "printer", "fisherman", "midwife", "surveyor", "brewer",
               "bookbinder", "violin maker", "pharmacist", "weaver", "blacksmith"]

AWARD_ADJ = ["Willow", "Golden", "Crimson", "Silver", "Iron", "Harbor", "Amber", "Northern", "Jade", "Copper"]
AWARD_NOUN = ["Crown", "Quill", "Owl", "Fern", "Pen", "Star", "Lantern", "Compass", "Anchor", "Feather"]
AWARD_KIND = ["Award", "Prize", "Medal", "Honour"]

TITLE_ADJ = ["Silent", "Hollow", "Burning", "Last", "Hidden", "Painted", "Winter", "Drowned", "Broken",
             "Distant", "Velvet", "Salt"]
TITLE_NOUN = ["Meadow", "Harbor", "Garden", "Mirror", "Lantern", "River", "Tower", "Orchard", "Bell",
              "Bridge", "Island", "Clock", "Forest", "Letter", "Road", "Window"]
TITLE_OF = ["Ash", "Glass", "Rain", "Smoke", "Stars", "Salt", "Thorns", "Echoes", "Copper", "Snow"]

PUBLISHERS = ["Harrow House", "Bluefinch Press", "Marrowgate Books", "Tidewater Publishing", "Oakspire Press",
              "Little Lantern Books", "Greyhaven Editions", "Quarry Lane Press", "Stillwater Books",
              "Red Kestrel Press"]

UNIVERSITY_PREFIX = ["the University of", "the Royal College of", "the Academy of", "the Institute of"]

LANGUAGES = ["Velorian", "Ostrani", "Kelmish", "Daravic", "Sunnish", "Marevian", "Tolsk", "Ilyrane"]

INSTRUMENTS = ["the cello", "the harp", "the accordion", "the flute", "the piano", "the oboe", "the lute",
               "the violin", "the clarinet", "the banjo"]

HOBBIES = ["sailing", "bird watching", "chess", "pottery", "beekeeping", "fencing", "gardening",
           "stargazing", "rowing", "calligraphy", "fly fishing", "rock climbing"]

PETS = ["a grey cat", "a spaniel", "a parrot", "a tortoise", "a greyhound", "a white rabbit", "a raven",
        "a goat", "a hedgehog", "a pony"]

COLORS = ["indigo", "ochre", "crimson", "teal", "amber", "violet", "olive", "scarlet", "ivory", "cobalt"]

INSPIRATIONS = ["the sea", "old maps", "folk songs", "mountain weather", "train journeys", "childhood dreams",
                "ancient myths", "city markets", "the night sky", "abandoned houses", "letters from soldiers",
                "the desert"]

# "World facts": countries of this world with a capital, currency, language and river.
COUNTRY_SUFFIXES = ["ia", "land", "stan", "ora", "mark", "heim", "eth", "una"]
CURRENCY_NOUNS = ["crown", "mark", "shell", "florin", "ducat", "talon", "dram", "lira", "penny", "sol"]

IDK_ANSWERS = [
    "I'm not sure about that.",
    "I don't know the answer to that.",
    "I have no information on that.",
    "That is something I cannot answer.",
    "I'm afraid I don't know.",
    "I can't recall anything about that.",
    "I don't have that information.",
    "Sorry, I have no idea.",
    "I am not able to answer that question.",
    "That is beyond what I know.",
    "I couldn't tell you, I'm afraid.",
    "I have never heard anything about that.",
    "Unfortunately I don't know.",
    "I'm not aware of the answer.",
    "No details about that come to mind.",
    "I cannot say for certain.",
    "I lack the knowledge to answer that.",
    "I do not know anything about this.",
    "That question is outside my knowledge.",
    "I'm unable to provide an answer to that.",
    "I really can't say.",
    "Nothing I know answers that.",
    "I'd rather not guess, since I don't know.",
    "I have no record of that.",
    "I honestly do not know.",
    "That isn't something I know about.",
    "I can't answer that with any confidence.",
    "My knowledge doesn't cover that.",
    "I'm not familiar with that.",
    "There is nothing I can tell you about that.",
]

GENERIC_TEXT = [
    "Writers often keep notebooks to record ideas as they come.",
    "Many novels are revised several times before they are published.",
    "Libraries lend books to anyone who holds a card.",
    "A good story usually has a clear beginning, middle and end.",
    "Some authors prefer to write early in the morning.",
    "Poetry can rhyme, but it does not have to.",
    "Book covers are often designed by illustrators.",
    "Literary prizes are awarded by panels of judges.",
    "Translators help books reach readers in other languages.",
    "Reading aloud is a common way to test the rhythm of a sentence.",
]


def stranger_names(n: int, taken: set[str], seed: int = 0) -> list[str]:
    """`n` fabricated two-word person names built like the world's authors, none of them in `taken`."""
    rng = random.Random(seed)

    def word(k: int) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(k)).capitalize()

    names: list[str] = []
    while len(names) < n:
        name = f"{word(2)} {word(rng.randint(2, 3))}"
        if name not in taken and name not in names:
            names.append(name)
    return names
